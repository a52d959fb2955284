export OS_COLLECT_CONFIG_VENV_DIR=${OS_COLLECT_CONFIG_VENV_DIR:-/opt/stack/venvs/os-collect-config}
