# Restart after an upgrade; forget the unit after an erase. The gannet
# user stays, as Fedora's packaging guidelines ask (files may still be
# owned by its uid).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart gannet.service >/dev/null 2>&1 || :
    fi
fi
exit 0
