#!/bin/sh
# An ssh stand-in for Open MPI's rsh launcher (--mca plm_rsh_agent): "netns_rsh.sh [ssh options] [user@]HOST COMMAND..."
# runs COMMAND on the simulated host HOST, i.e. inside the network namespace HOST's address belongs to, under that
# host's own host name (a UTS namespace of its own), with a login-like environment (as ssh would give: PATH, HOME,
# USER, LOGNAME, SHELL; nothing else of the caller's), through sh -c, as sshd runs a command.
# The hosts come from the file named by $NETNS_RSH_MAP, one per line: ADDRESS NAMESPACE HOSTNAME (tests/multihost/
# hosts.sh writes it). HOST may be the address or the host name.
set -eu
map="${NETNS_RSH_MAP:?netns_rsh.sh: NETNS_RSH_MAP (the host map file) is not set}"
# ssh's options: those with an argument skip it as well; the rest (-x, -T, -q, -n, ...) are ignored.
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -[BbcDEeFIiJLlmOoPpQRSWw]) shift 2 ;;
    -[BbcDEeFIiJLlmOoPpQRSWw]?*) shift ;;
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "netns_rsh.sh: usage: netns_rsh.sh [ssh options] HOST COMMAND... (no interactive shell)" >&2; exit 255; }
host="${1#*@}"
shift
line="$(awk -v h="$host" '$1 == h || $3 == h { print; exit }' "$map")"
[ -n "$line" ] || { echo "netns_rsh.sh: unknown host '$host' (not in $map)" >&2; exit 255; }
set -- "$line" "$*"  # the command as one string, as ssh sends it
ns="$(echo "$1" | awk '{ print $2 }')"
name="$(echo "$1" | awk '{ print $3 }')"
# shellcheck disable=SC2016  # expanded by the inner sh, on the host
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$1" && exec env -i PATH="$PATH" HOME="${HOME:-/root}" USER="$(id -un)" LOGNAME="$(id -un)" SHELL=/bin/sh NETNS_RSH_MAP="$NETNS_RSH_MAP" sh -c "$2"' sh "$name" "$2"
