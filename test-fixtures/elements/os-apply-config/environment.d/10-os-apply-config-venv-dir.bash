export OS_APPLY_CONFIG_VENV_DIR=${OS_APPLY_CONFIG_VENV_DIR:-/opt/stack/venvs/os-apply-config}
