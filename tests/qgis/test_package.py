"""Tests of the plugin ZIP (tools/package_plugin.py): what goes in, the compiled resources,
the checks before writing, and an install into a fresh QGIS profile where qgis_process runs
every algorithm headless, with the worker reading the installed copy of the plugin.

Run with ``QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q -p no:cacheprovider tests/qgis/test_package.py``.
"""
from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from conftest import ROOT, needs_training
from landslide_mapper.core.mapping.bundled import CASCADE_CHECKPOINT, RGB_CHECKPOINT

TOOL = ROOT / "tools" / "package_plugin.py"
PACKAGE = "landslide_mapper"
CHECKPOINT_FILES = ("checkpoint.json", "model.keras", "model.onnx", "MODEL_CARD.md")
NEVER_TOP_LEVEL = {"tests", "bench", "bench_output", "build", "dist", "demo_data", "demo_output", "tools",
                   "scripts", ".venv", ".git", ".ci", "dev.sh", "pyproject.toml", "requirements.txt",
                   "resources.qrc"}
QGIS_PROCESS_TIMEOUT = 180


def load_tool():
    """tools/package_plugin.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("package_plugin", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def qgis_process_binary() -> str:
    """QGIS' own qgis_process binary, or skip. Debian's /usr/bin/qgis_process wrapper adds
    QGIS_OPTS from /etc/default/qgis (--noversioncheck), which 3.22's binary refuses."""
    found = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"
    if not os.access(found, os.X_OK):
        pytest.skip("qgis_process.bin (Debian package qgis) is not installed")
    return found


def qgis_process(args, config_dir, **env) -> subprocess.CompletedProcess:
    """Run ``qgis_process.bin *args`` headless on the QGIS configuration ``config_dir`` (its
    profile ``default`` holds the plugins); ``env`` adds or overrides environment variables.

    PYTHONPATH, PYTHONHOME and QGIS_PLUGINPATH are dropped so that QGIS' Python finds the
    plugin only where it was installed, as on a user's machine."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "QGIS_PLUGINPATH")}
    full_env.update(QGIS_CUSTOM_CONFIG_PATH=str(config_dir), QT_QPA_PLATFORM="offscreen")
    full_env.update({k: str(v) for k, v in env.items()})
    return subprocess.run([qgis_process_binary(), *map(str, args)], env=full_env, capture_output=True,
                          text=True, timeout=QGIS_PROCESS_TIMEOUT)


def output(proc: subprocess.CompletedProcess) -> str:
    return f"exit status {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The ZIP built by the command line into a temporary folder: (path, stdout)."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(TOOL), "--output", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, output(proc)
    zips = list(out.iterdir())
    assert len(zips) == 1, zips            # nothing else: no partial file left behind
    return zips[0], proc.stdout


@pytest.fixture(scope="module")
def plugin_zip(built) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def names(plugin_zip) -> list:
    with zipfile.ZipFile(plugin_zip) as zf:
        assert zf.testzip() is None
        return zf.namelist()


@pytest.fixture(scope="module")
def installed_profile(plugin_zip, tmp_path_factory) -> Path:
    """A fresh QGIS configuration with the ZIP extracted into its default profile's plugins
    (as Install from ZIP does) and the plugin enabled by qgis_process; its folder."""
    config = tmp_path_factory.mktemp("qgis") / "config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    before = qgis_process(["plugins"], config)
    assert before.returncode == 0, output(before)
    assert f"  {PACKAGE}" in before.stdout.splitlines(), output(before)   # installed, not enabled yet
    enabled = qgis_process(["plugins", "enable", PACKAGE], config)
    assert enabled.returncode == 0, output(enabled)
    assert f"Enabled {PACKAGE}" in enabled.stdout, output(enabled)
    return config


# --------------------------------------------------------------------------- contents


def test_zip_is_named_after_the_version_and_reported(built, names):
    path, stdout = built
    parser = configparser.ConfigParser()
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    assert path.name == f"{PACKAGE}-{parser['general']['version']}.zip"
    assert str(path) in stdout
    assert f"{len(names)} files" in stdout
    assert f"{path.stat().st_size / 1e6:.1f} MB" in stdout


def test_one_top_level_folder_with_the_runtime_files(names):
    assert {PurePosixPath(n).parts[0] for n in names} == {PACKAGE}
    rel = [n[len(PACKAGE) + 1:] for n in names]
    for required in ("metadata.txt", "__init__.py", "__main__.py", "plugin.py", "qgis_compat.py", "LICENSE",
                     "README.md", "requirements-worker.txt", "requirements-worker-numpy2.txt", "icons/icon.svg", "ui/dock.ui",
                     "models/spectral_baseline.onnx", "models/spectral_baseline.json"):
        assert required in rel
    for folder in (CASCADE_CHECKPOINT.name, RGB_CHECKPOINT.name):
        for name in CHECKPOINT_FILES:
            assert f"models/{folder}/{name}" in rel
    # QGIS' installer takes the plugin name from the first metadata.txt in sorted order
    assert [n for n in names if n.endswith("metadata.txt")] == [f"{PACKAGE}/metadata.txt"]


def test_every_runtime_module_is_in_and_nothing_else(names):
    rel = {n[len(PACKAGE) + 1:] for n in names}
    tool = load_tool()
    for folder in tool.packaged_folders():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                assert path.relative_to(ROOT).as_posix() in rel
    allowed_top = set(tool.TOP_FILES) | {"icons", "models"} | set(tool.PACKAGES)
    for name in rel:
        parts = PurePosixPath(name).parts
        assert parts[0] in allowed_top, name
        assert parts[0] not in NEVER_TOP_LEVEL, name
        assert not any(p.startswith(".") for p in parts), name
        assert "__pycache__" not in parts and not name.endswith((".pyc", ".pyo")), name


def test_entries_are_sorted_with_one_timestamp_and_plain_modes(plugin_zip, names):
    assert names == sorted(names)
    with zipfile.ZipFile(plugin_zip) as zf:
        infos = zf.infolist()
    assert len({i.date_time for i in infos}) == 1
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos)


def test_packaged_files_are_the_working_tree_files(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        for rel in ("metadata.txt", "plugin.py", f"models/{CASCADE_CHECKPOINT.name}/checkpoint.json"):
            assert zf.read(f"{PACKAGE}/{rel}") == (ROOT / rel).read_bytes()
        for folder in (CASCADE_CHECKPOINT.name, RGB_CHECKPOINT.name):
            for name in CHECKPOINT_FILES:
                rel = f"models/{folder}/{name}"
                assert zf.getinfo(f"{PACKAGE}/{rel}").file_size == (ROOT / rel).stat().st_size
    assert not any(n.startswith(f"{PACKAGE}/resources") for n in zf.namelist())   # no compiled Qt resources


def fake_tree(root: Path, metadata_drop=(), icon="icons/icon.svg", checkpoint=CHECKPOINT_FILES,
              metadata_set=None) -> Path:
    """A small plugin tree: the real top-level files and icons, placeholder models;
    ``metadata_set`` replaces (or adds) metadata.txt entries."""
    tool = load_tool()
    root.mkdir()
    for name in tool.TOP_FILES:
        shutil.copyfile(ROOT / name, root / name)
    shutil.copytree(ROOT / "icons", root / "icons")
    (root / "core").mkdir()
    (root / "core" / "__init__.py").write_text("")
    replaced = dict(metadata_set or {}, icon=icon)
    lines = [line for line in (ROOT / "metadata.txt").read_text(encoding="utf-8").splitlines()
             if line.split("=")[0] not in (*metadata_drop, *replaced)]
    lines += [f"{key}={value}" for key, value in replaced.items()]
    (root / "metadata.txt").write_text("\n".join(lines + [""]), encoding="utf-8")
    models = root / "models"
    for folder in (CASCADE_CHECKPOINT.name, RGB_CHECKPOINT.name):
        (models / folder).mkdir(parents=True)
        for name in checkpoint:
            (models / folder / name).write_text("placeholder")
    for name in ("spectral_baseline.json", "spectral_baseline.onnx"):
        (models / name).write_text("placeholder")
    return root


def test_refuses_incomplete_metadata_and_checkpoint_naming_what_is_missing(tmp_path):
    tool = load_tool()
    root = fake_tree(tmp_path / "tree", metadata_drop=("email", "repository"), icon="icons/missing.svg",
                     checkpoint=("checkpoint.json", "MODEL_CARD.md"))
    out = tmp_path / "dist"
    with pytest.raises(tool.PackageError) as err:
        tool.build(out, root=root)
    message = str(err.value)
    for missing in ("'email'", "'repository'", "icon=icons/missing.svg",
                    f"models/{CASCADE_CHECKPOINT.name}/model.keras", f"models/{RGB_CHECKPOINT.name}/model.onnx"):
        assert missing in message
    assert "checkpoint.json" not in message
    assert not out.exists() or not any(out.iterdir())


def test_refuses_metadata_the_plugin_repository_would_reject(tmp_path):
    """plugins.qgis.org's validator refuses a slash in the author and addresses that are not
    http(s) web addresses, the plugin template's placeholders among them."""
    tool = load_tool()
    root = fake_tree(tmp_path / "tree", metadata_set={"author": "Survey/GIS team", "tracker": "http://bugs",
                                                       "repository": "github.com/someone/plugin"})
    with pytest.raises(tool.PackageError) as err:
        tool.build(tmp_path / "dist", root=root)
    message = str(err.value)
    assert "'author' cannot contain a slash" in message
    assert "tracker=http://bugs is not a web address" in message
    assert "repository=github.com/someone/plugin is not a web address" in message
    assert "homepage" not in message                     # the real one is fine


def test_command_line_reports_the_failure(tmp_path):
    root = fake_tree(tmp_path / "tree", checkpoint=("checkpoint.json",))
    # the command line packages its own tree: run a copy of the tool from the fake tree
    (root / "tools").mkdir()
    shutil.copyfile(TOOL, root / "tools" / "package_plugin.py")
    proc = subprocess.run([sys.executable, str(root / "tools" / "package_plugin.py")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert f"models/{CASCADE_CHECKPOINT.name}/model.onnx is missing" in proc.stderr
    assert not (root / "dist").exists() or not any((root / "dist").iterdir())


def test_small_tree_packages_without_the_missing_optional_packages(tmp_path):
    """processing_provider/ (and tasks/, ui/) absent: skipped, the rest still packaged."""
    tool = load_tool()
    root = fake_tree(tmp_path / "tree")
    target, _ = tool.build(tmp_path / "dist", root=root)
    with zipfile.ZipFile(target) as zf:
        rel = {n[len(PACKAGE) + 1:] for n in zf.namelist()}
    assert "core/__init__.py" in rel and "qgis_compat.py" in rel
    assert not any(n.startswith(("processing_provider/", "ui/", "tasks/")) for n in rel)


# --------------------------------------------------------------------------- install


def test_installs_into_a_fresh_profile_and_loads(installed_profile):
    listed = qgis_process(["plugins"], installed_profile)
    assert listed.returncode == 0, output(listed)
    # "*": loaded, and a plugin with a Processing provider
    assert f"* {PACKAGE}" in listed.stdout.splitlines(), output(listed)
    assert "Traceback" not in listed.stdout + listed.stderr, output(listed)
    as_json = qgis_process(["--json", "plugins"], installed_profile)
    assert json.loads(as_json.stdout)["plugins"][PACKAGE] == {"loaded": True}, output(as_json)


def test_installed_plugin_registers_its_processing_algorithms(installed_profile):
    """QGIS 3.22's "*" only says the plugin is loaded and its metadata declares a provider;
    the algorithm list shows that initProcessing really registered it."""
    listed = qgis_process(["--json", "list"], installed_profile)
    assert listed.returncode == 0, output(listed)
    providers = json.loads(listed.stdout)["providers"]
    assert PACKAGE in providers, f"providers: {sorted(providers)}\n{output(listed)}"
    assert set(providers[PACKAGE]["algorithms"]) == {f"{PACKAGE}:{name}" for name in ALGORITHMS}, output(listed)


# ------------------------------------------------------------ qgis_process runs every algorithm

ALGORITHMS = ("map_landslides", "subtract_inventories", "inventory_statistics", "assess_accuracy",
              "finetune_checkpoint")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from landslide_mapper.core.demo import SceneSpec, generate_scene

    return generate_scene(tmp_path_factory.mktemp("scene"), SceneSpec(size=192, years=(2016, 2017), seed=5))


def run_algorithm(config, name: str, **params) -> dict:
    """``qgis_process.bin --json run landslide_mapper:<name> -- KEY=VALUE ...`` (a list value
    repeats its key) with this session's Python as the worker; the parsed JSON answer."""
    args = ["--json", "run", f"{PACKAGE}:{name}", "--"]
    for key, value in params.items():
        args += [f"{key}={v}" for v in (value if isinstance(value, list) else [value])]
    proc = qgis_process(args, config, LANDSLIDE_MAPPER_PYTHON=sys.executable)
    assert proc.returncode == 0, output(proc)
    return json.loads(proc.stdout)


def test_every_algorithm_has_help(installed_profile):
    for name in ALGORITHMS:
        proc = qgis_process(["help", f"{PACKAGE}:{name}"], installed_profile)
        assert proc.returncode == 0 and "OUTPUT_FOLDER" in proc.stdout, output(proc)


def test_qgis_process_maps_and_analyses_the_demo_scene(installed_profile, scene, tmp_path):
    truth = {year: f"{scene.truth_path}|layername=landslides_{year}" for year in (2016, 2017)}
    mapped = run_algorithm(installed_profile, "map_landslides", IMAGES=[str(p) for p in scene.rasters.values()],
                           OUTPUT_FOLDER=tmp_path, RUN_NAME="demo", STATISTICS=tmp_path / "statistics.csv")
    results = mapped["results"]
    assert results["RUN_FOLDER"] == str(tmp_path / "demo")
    assert [u.rsplit("=", 1)[1] for u in results["LANDSLIDES"]] == ["landslides_2016", "landslides_2017"]
    # the worker ran the plugin installed from the ZIP, with the bundled cascade it chose itself
    assert json.loads((tmp_path / "demo" / "job.json").read_text())["model"] == "auto"
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["model"] == (f"{installed_profile}/profiles/default/python/plugins/{PACKAGE}/models/"
                                f"{CASCADE_CHECKPOINT.name}/model.onnx")
    assert (tmp_path / "statistics.csv").read_text().startswith("year,")
    assert any(line.startswith("Mapped 2016:") for line in mapped["log"]["info"])

    sub = run_algorithm(installed_profile, "subtract_inventories", INVENTORIES=list(truth.values()),
                        OUTPUT_FOLDER=tmp_path, RUN_NAME="changes")["results"]
    assert sub["CHANGES"] == [f"{sub['GEOPACKAGE']}|layername=new_2017"]
    stats = run_algorithm(installed_profile, "inventory_statistics", INVENTORIES=list(truth.values()),
                          MAPPED_AREA=0.33, OUTPUT_FOLDER=tmp_path, RUN_NAME="stats")["results"]
    assert Path(stats["REPORT"]).is_file() and (Path(stats["RUN_FOLDER"]) / "statistics.csv").is_file()
    acc = run_algorithm(installed_profile, "assess_accuracy", PREDICTED=results["LANDSLIDES"][1],
                        REFERENCE=truth[2017], OUTPUT_FOLDER=tmp_path, RUN_NAME="accuracy",
                        ACCURACY=tmp_path / "accuracy.csv")["results"]
    assert acc["ASSESSED"][0].endswith("layername=predicted_2017")
    assert (tmp_path / "accuracy.csv").read_text().startswith("year,precision,recall,f1")


@needs_training
def test_qgis_process_fine_tunes_the_bundled_checkpoint(installed_profile, scene, tmp_path):
    result = run_algorithm(installed_profile, "finetune_checkpoint", IMAGES=str(scene.rasters[2017]),
                           LABELS=f"{scene.truth_path}|layername=landslides_2017", NAME="demo_stage", EPOCHS=1,
                           BATCH_SIZE=4, PATCH_SIZE=0, MAX_STEPS=1, OUTPUT_FOLDER=tmp_path)["results"]
    assert result["CHECKPOINT"] == str(tmp_path / "demo_stage") and result["STAGE"] >= 2
    info = json.loads((tmp_path / "demo_stage" / "checkpoint.json").read_text())
    assert info["id"] == result["CHECKPOINT_ID"] and len(info["lineage"]) == result["STAGE"]


def test_qgis_process_refuses_bad_parameters_naming_them(installed_profile, scene, tmp_path):
    proc = qgis_process(["run", f"{PACKAGE}:map_landslides", "--", f"IMAGES={scene.rasters[2016]}",
                         f"IMAGES={scene.rasters[2017]}", "YEARS=2016", f"OUTPUT_FOLDER={tmp_path}"],
                        installed_profile, LANDSLIDE_MAPPER_PYTHON=sys.executable)
    assert proc.returncode != 0
    assert "YEARS: 1 year(s) given for 2 images" in proc.stdout + proc.stderr, output(proc)
    assert list(tmp_path.iterdir()) == []


def test_debians_qgis_process_wrapper_is_a_known_limit():
    """Debian's /usr/bin/qgis_process passes QGIS_OPTS of /etc/default/qgis (--noversioncheck),
    which QGIS 3.22's binary (Debian 12) refuses, so README says to call qgis_process.bin;
    QGIS 3.40's (Debian 13) accepts it. This test fails if either changes, and README with it."""
    from qgis.core import Qgis

    defaults = Path("/etc/default/qgis")
    if not shutil.which("qgis_process") or "--noversioncheck" not in (
            defaults.read_text() if defaults.is_file() else ""):
        pytest.skip("no Debian qgis_process wrapper with --noversioncheck here")
    proc = subprocess.run(["qgis_process", "list"], capture_output=True, text=True, timeout=QGIS_PROCESS_TIMEOUT,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    if Qgis.QGIS_VERSION_INT < 32300:
        assert proc.returncode != 0 and "Command --noversioncheck not known!" in proc.stdout + proc.stderr
    elif Qgis.QGIS_VERSION_INT >= 34000:
        assert proc.returncode == 0 and "Available algorithms" in proc.stdout, output(proc)
    elif proc.returncode != 0:                 # releases in between: not checked here either way
        assert "Command --noversioncheck not known!" in proc.stdout + proc.stderr, output(proc)
