#!/bin/sh
# Build gannet's .deb and .rpm and check them as an operator would meet
# them: lintian, rpm's file list, the unit (systemd-analyze verify and
# security score), the man page, gannet-start's parsing; then install the
# .deb with dpkg, run the unit's ExecStart as the gannet user, talk to it on
# 127.0.0.1, stop it, remove and purge the package and check nothing is
# left.
#
# Needs root (dpkg -i) and a Debian-like system; installs the tools it
# needs with apt-get. Does not need systemd as PID 1. Any failed check
# stops the script with "FAIL: ..." and a non-zero status.
set -eu

cd "$(dirname "$0")/.."
max_exposure=2.0
pkg=gannet

fail() {
    echo "packaging/test.sh: FAIL: $*" >&2
    exit 1
}
step() {
    echo "== $*"
}
pass() {
    echo "   ok: $*"
    passed=$((passed + 1))
}
passed=0

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs the .deb with dpkg)"

scratch=$(mktemp -d /tmp/gannet-pkgtest.XXXXXX)
daemon_pid=
cleanup() {
    status=$?
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        sleep 1
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q installed; then
        dpkg -P "$pkg" >/dev/null 2>&1 || true
    fi
    rm -rf "$scratch"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
step "tools"
missing=
need() { # need COMMAND APT-PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing="$missing $2"
}
need lintian lintian
need rpm rpm
need rpmlint rpmlint
need systemd-analyze systemd
need systemd-tmpfiles systemd
need mandoc mandoc
need groff groff-base
need man man-db
need adduser adduser
need setpriv util-linux
need prlimit util-linux
need shellcheck shellcheck
need strip binutils
need bash bash
need timeout coreutils
need ss iproute2
if [ -n "$missing" ]; then
    echo "installing:$missing"
    apt-get update -qq || fail "apt-get update"
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null ||
        fail "apt-get install$missing"
fi
pass "tools present"

# ---------------------------------------------------------------- static checks
step "shell scripts (shellcheck)"
shellcheck packaging/gannet-start packaging/build.sh packaging/test.sh ||
    fail "shellcheck"
shellcheck -s sh packaging/debian/postinst packaging/debian/postrm \
    packaging/rpm/*.sh || fail "shellcheck (maintainer scripts)"
pass "shellcheck clean"

step "man page"
out=$(mandoc -Tlint -Wstyle man/gannet.1 2>&1) || true
[ -z "$out" ] || fail "mandoc -Tlint -Wstyle man/gannet.1:
$out"
out=$(groff -man -ww -z man/gannet.1 2>&1) || true
[ -z "$out" ] || fail "groff -man -ww -z man/gannet.1:
$out"
for section in NAME SYNOPSIS DESCRIPTION OPTIONS FILES SIGNALS "EXIT STATUS" \
    COMPATIBILITY EXAMPLES "SEE ALSO"; do
    grep -q "^\.SH \"*$section\"*\$" man/gannet.1 || fail "man page lacks $section"
done
for flag in p U s a l d u P m M c t R C b B I f n L k v vv vvv F A S Y X W Z D h V i N; do
    grep -q "^\.B[IR]* \\\\-$flag\\b" man/gannet.1 || fail "man page lacks -$flag"
done
for opt in idle_timeout hot_lru_pct warm_lru_pct hot_max_factor warm_max_factor \
    temporary_ttl slab_chunk_max slab_automove hashpower lru_crawler \
    lru_crawler_sleep lru_crawler_tocrawl slab_reassign no_modern \
    no_hashexpand inline_ascii_resp lru_maintainer track_sizes hotkeys \
    metrics_listen; do
    grep -q "^\.B[IR]* $opt" man/gannet.1 || fail "man page lacks -o $opt"
done
pass "mandoc and groff clean; every section, flag and -o option present"

step "gannet-start turns the conf file into arguments"
cat >"$scratch/args" <<'STUB'
#!/bin/sh
for arg in "$@"; do printf '<%s>\n' "$arg"; done
STUB
chmod 755 "$scratch/args"
printf '%s\n' \
    '# comment line' \
    '' \
    '   # indented comment' \
    '-m 64' \
    '-p 11211 # trailing comment' \
    '-d' \
    '--daemon' \
    '	-l   127.0.0.1,[::1]:11212	' \
    '-o hotkeys=10,metrics_listen=127.0.0.1:9150' \
    '-v*' >"$scratch/conf"
printf -- '-c 1024\r\n-vv' >>"$scratch/conf" # CRLF, and no final newline
got=$(GANNET_BIN=$scratch/args packaging/gannet-start "$scratch/conf" -U 0 -t 2)
want=$(printf '<%s>\n' -m 64 -p 11211 -l '127.0.0.1,[::1]:11212' \
    -o hotkeys=10,metrics_listen=127.0.0.1:9150 '-v*' -c 1024 -vv -U 0 -t 2)
[ "$got" = "$want" ] || fail "gannet-start arguments:
got:
$got
want:
$want"
got=$(GANNET_BIN=$scratch/args packaging/gannet-start packaging/gannet.conf)
want=$(printf '<%s>\n' -m 64 -p 11211 -l 127.0.0.1 -c 1024 -P /run/gannet/gannet.pid)
[ "$got" = "$want" ] || fail "arguments from packaging/gannet.conf:
got:
$got
want:
$want"
set +e
GANNET_BIN=$scratch/args packaging/gannet-start "$scratch/no-such.conf" 2>/dev/null
status=$?
set -e
[ "$status" -eq 78 ] || fail "gannet-start with a missing file exited $status, want 78"
pass "comments, blank lines, -d, CRLF, globs and extra flags handled; missing file exits 78"

step "unit hardening (systemd-analyze security --offline=yes)"
report=$(systemd-analyze security --offline=yes packaging/gannet.service 2>&1) ||
    fail "systemd-analyze security: $report"
score=$(printf '%s\n' "$report" |
    sed -n 's/.*Overall exposure level for gannet.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure score in:
$report"
echo "   exposure score: $score (memcached's Debian unit: 4.8; limit $max_exposure)"
awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s <= m) }' ||
    fail "exposure $score is above $max_exposure"
pass "exposure $score <= $max_exposure"

# ---------------------------------------------------------------- build
step "build packages (packaging/build.sh)"
built=$(packaging/build.sh) || fail "packaging/build.sh"
deb=$(printf '%s\n' "$built" | grep '\.deb$')
rpm_file=$(printf '%s\n' "$built" | grep '\.rpm$')
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ "$(basename "$deb")" = "gannet_${version}_amd64.deb" ] || fail "deb name $deb"
[ "$(basename "$rpm_file")" = "gannet-${version}.x86_64.rpm" ] || fail "rpm name $rpm_file"
if [ ! -s "$deb" ] || [ ! -s "$rpm_file" ]; then
    fail "package files missing"
fi
pass "$deb"
pass "$rpm_file"

# ---------------------------------------------------------------- deb
step "lintian"
lintian -I --pedantic --tag-display-limit 0 "$deb" >"$scratch/lintian" 2>&1 || true
sed 's/^/   /' "$scratch/lintian"
if grep -q '^[EW]: ' "$scratch/lintian"; then
    fail "lintian reports errors or warnings"
fi
pass "no lintian errors or warnings ($(grep -c '^[IPNX]: ' "$scratch/lintian" || true) informational tags)"

step "deb contents"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | sort >"$scratch/deb-files"
for f in /usr/bin/gannet /usr/lib/gannet/gannet-start /etc/gannet.conf \
    /usr/lib/systemd/system/gannet.service /usr/lib/tmpfiles.d/gannet.conf \
    /usr/share/man/man1/gannet.1.gz /usr/share/doc/gannet/copyright \
    /usr/share/doc/gannet/changelog.gz /usr/share/doc/gannet/README; do
    grep -qx "$f" "$scratch/deb-files" || fail "deb lacks $f"
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/gannet.conf || fail "/etc/gannet.conf is not a conffile"
pass "binary, unit, tmpfiles, conffile, man page and docs present"

# ---------------------------------------------------------------- rpm
step "rpm"
rpm -qpl "$rpm_file" 2>/dev/null | sort >"$scratch/rpm-files"
cat >"$scratch/rpm-want" <<'LIST'
/etc/gannet.conf
/usr/bin/gannet
/usr/lib/gannet/gannet-start
/usr/lib/systemd/system/gannet.service
/usr/lib/tmpfiles.d/gannet.conf
/usr/share/doc/gannet/README
/usr/share/licenses/gannet/copyright
/usr/share/man/man1/gannet.1.gz
LIST
diff -u "$scratch/rpm-want" "$scratch/rpm-files" || fail "rpm -qpl differs from the expected list"
rpm -qpc "$rpm_file" 2>/dev/null | grep -qx /etc/gannet.conf || fail "rpm: /etc/gannet.conf is not %config"
rpm -qp --scripts "$rpm_file" 2>/dev/null | grep -q 'useradd -r -g gannet' || fail "rpm: no user creation"
rpm -qpR "$rpm_file" 2>/dev/null | grep -q '^systemd' || fail "rpm: does not require systemd"
rpm -K --nosignature "$rpm_file" >/dev/null 2>&1 || fail "rpm -K: digests do not match"
rpmlint "$rpm_file" >"$scratch/rpmlint" 2>&1 || true
sed 's/^/   rpmlint: /' "$scratch/rpmlint"
pass "rpm file list, %config, scripts, requirements and digests"

# ---------------------------------------------------------------- install
step "dpkg -i"
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q installed; then
    dpkg -P "$pkg" >/dev/null || fail "could not purge an earlier $pkg"
fi
dpkg -i "$deb" >"$scratch/dpkg.log" 2>&1 || {
    cat "$scratch/dpkg.log"
    fail "dpkg -i"
}
entry=$(getent passwd gannet) || fail "no gannet user after install"
echo "   $entry"
uid=$(echo "$entry" | cut -d: -f3)
[ "$uid" -lt 1000 ] || fail "gannet uid $uid is not a system uid"
[ "$(echo "$entry" | cut -d: -f6)" = /nonexistent ] || fail "gannet home is not /nonexistent"
[ "$(echo "$entry" | cut -d: -f7)" = /usr/sbin/nologin ] || fail "gannet shell is not nologin"
[ ! -e /nonexistent ] || fail "/nonexistent exists"
getent group gannet >/dev/null || fail "no gannet group"
[ "$(id -gn gannet)" = gannet ] || fail "gannet's primary group is not gannet"
[ -x /usr/bin/gannet ] || fail "/usr/bin/gannet is not executable"
[ "$(stat -c %a /usr/lib/gannet/gannet-start)" = 755 ] || fail "gannet-start mode"
cmp -s packaging/gannet.conf /etc/gannet.conf || fail "/etc/gannet.conf differs from packaging/gannet.conf"
dpkg-query -W -f='${Conffiles}\n' "$pkg" | grep -q '/etc/gannet.conf' ||
    fail "dpkg does not list /etc/gannet.conf as a conffile"
[ -L /etc/systemd/system/multi-user.target.wants/gannet.service ] ||
    fail "the unit is not enabled"
pass "user, group, files, conffile and enablement"

step "systemd-analyze verify (installed unit)"
out=$(systemd-analyze verify /usr/lib/systemd/system/gannet.service 2>&1 >/dev/null) ||
    fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify printed:
$out"
pass "verify printed nothing"

step "tmpfiles (what systemd does at boot)"
systemd-tmpfiles --create gannet.conf || fail "systemd-tmpfiles --create gannet.conf"
[ "$(stat -c '%U:%G %a' /run/gannet)" = "gannet:gannet 755" ] ||
    fail "/run/gannet is $(stat -c '%U:%G %a' /run/gannet)"
pass "/run/gannet owned by gannet"

# ---------------------------------------------------------------- run
step "run the unit's ExecStart as the gannet user"
exec_start=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/gannet.service)
[ -n "$exec_start" ] || fail "no ExecStart in the unit"
port=11211
if ss -Hltn "sport = :$port" | grep -q .; then
    # Something (a real memcached?) has the default port: move gannet.
    port=21211
    exec_start="$exec_start -p $port"
fi
echo "   ExecStart=$exec_start (port $port)"
# The unit's LimitNOFILE=65536, or as much of it as this machine allows
# (a container without CAP_SYS_RESOURCE cannot raise the hard limit).
nofile=$(prlimit --nofile --noheadings --output HARD | tr -d ' ')
if [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; then
    nofile=65536
fi
echo "   open-file limit: $nofile"
# shellcheck disable=SC2086 # ExecStart is a command line to split
prlimit --nofile="$nofile:$nofile" setpriv --reuid=gannet --regid=gannet --init-groups \
    --inh-caps=-all $exec_start >"$scratch/daemon.log" 2>&1 &
daemon_pid=$!

ask_version() {
    # shellcheck disable=SC2016 # $1 belongs to the inner bash
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "version\r\n" >&3
        IFS= read -r line <&3 && printf "%s\n" "$line"' _ "$1" 2>/dev/null
}
reply=
tries=0
while [ "$tries" -lt 50 ]; do
    kill -0 "$daemon_pid" 2>/dev/null || break
    reply=$(ask_version "$port") && break
    tries=$((tries + 1))
    sleep 0.2
done
case $reply in
VERSION\ *) ;;
*)
    sed 's/^/   daemon: /' "$scratch/daemon.log"
    fail "no VERSION reply on 127.0.0.1:$port (got '$reply')"
    ;;
esac
pass "127.0.0.1:$port answered: $(printf '%s' "$reply" | tr -d '\r')"

[ "$(ps -o user= -p "$daemon_pid" | tr -d ' ')" = gannet ] || fail "the daemon does not run as gannet"
[ -s /run/gannet/gannet.pid ] || fail "no pid file /run/gannet/gannet.pid"
[ "$(cat /run/gannet/gannet.pid)" = "$daemon_pid" ] ||
    fail "pid file holds $(cat /run/gannet/gannet.pid), want $daemon_pid"
pass "runs as gannet; pid file holds $daemon_pid"

kill -TERM "$daemon_pid"
set +e
wait "$daemon_pid"
status=$?
set -e
daemon_pid=
[ "$status" -eq 0 ] || fail "SIGTERM: exit status $status, want 0"
[ ! -e /run/gannet/gannet.pid ] || fail "pid file left after SIGTERM"
pass "SIGTERM: exit 0, pid file removed"

# ---------------------------------------------------------------- remove, purge
step "dpkg -r, dpkg -P"
dpkg -r "$pkg" >/dev/null 2>&1 || fail "dpkg -r"
[ ! -e /usr/bin/gannet ] || fail "/usr/bin/gannet left after remove"
[ -e /etc/gannet.conf ] || fail "remove deleted the conffile (only purge may)"
dpkg -P "$pkg" >/dev/null 2>&1 || fail "dpkg -P"
for f in $(cat "$scratch/deb-files") /run/gannet \
    /etc/systemd/system/multi-user.target.wants/gannet.service \
    /var/lib/systemd/deb-systemd-helper-enabled/gannet.service.dsh-also; do
    case $f in
    /usr/share/man/man1 | /usr/share/man | /usr/share/doc | /usr/share | /usr/lib | \
        /usr/lib/systemd | /usr/lib/systemd/system | /usr/lib/tmpfiles.d | /usr/bin | \
        /usr | /etc | .) continue ;;
    esac
    [ ! -e "$f" ] || fail "$f left after purge"
done
! getent passwd gannet >/dev/null || fail "gannet user left after purge"
! getent group gannet >/dev/null || fail "gannet group left after purge"
! dpkg-query -W "$pkg" >/dev/null 2>&1 || fail "dpkg still knows $pkg"
pass "nothing left after purge"

echo "packaging: $passed passed, 0 failed"
