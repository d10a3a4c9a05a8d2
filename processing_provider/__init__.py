"""The Processing side of the plugin: a provider and one algorithm per job type."""
