# Stop and disable the service when the package is erased (not upgraded).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now gannet.service >/dev/null 2>&1 || :
fi
exit 0
