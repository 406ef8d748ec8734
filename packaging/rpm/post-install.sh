# Create /run/gannet now (systemd does it at boot) and apply presets on a
# first install, as the %systemd_post macro does.
if [ -d /run/systemd/system ]; then
    systemd-tmpfiles --create gannet.conf >/dev/null 2>&1 || :
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl preset gannet.service >/dev/null 2>&1 || :
    fi
fi
exit 0
