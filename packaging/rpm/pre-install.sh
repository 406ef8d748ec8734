# Create the gannet system user before the files that it owns arrive.
getent group gannet >/dev/null || groupadd -r gannet
getent passwd gannet >/dev/null ||
    useradd -r -g gannet -d /nonexistent -M -s /sbin/nologin \
        -c "gannet cache daemon" gannet
exit 0
