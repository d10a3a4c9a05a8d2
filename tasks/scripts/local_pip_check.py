# pip check of this environment's own packages
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
def canonical(name): return re.sub(r"[-_.]+", "-", name).lower()
sites = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
local = {canonical(d.metadata["Name"]) for d in metadata.distributions(path=sorted(sites))}
proc = subprocess.run([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
                      capture_output=True, text=True)
ours = 0
for line in proc.stdout.splitlines():
    if line.split() and canonical(line.split()[0]) in local:
        ours += 1
        print(line)
    elif line.strip() and not line.startswith("No broken"):
        print("(the host's, not this environment's) " + line)
print(proc.stderr.strip() or ("No broken requirements in this environment." if not ours else ""))
sys.exit(1 if ours or (proc.returncode != 0 and not proc.stdout.strip()) else 0)   # or pip itself failed
