#!/bin/sh
# sampan-entrypoint: writes a sampan-node config from environment
# variables, then runs sampan-node with it (exec, so SIGTERM reaches it).
#
#   sampan-entrypoint              write the config, exec sampan-node
#   sampan-entrypoint --print      print the config instead (also with
#                                  SAMPAN_PRINT_CONFIG=1); it holds the secrets
#   sampan-entrypoint --FLAG ...   run sampan-node --FLAG ... (--print-config)
#   sampan-entrypoint CMD ARGS...  run CMD instead (sampan-cli, sh, ...)
#
# The node:
#   SAMPAN_NODE_ID            this node's id (> 0). Unset: the ordinal at the
#                             end of the host name plus one (sampan-2 -> 3),
#                             from SAMPAN_POD_NAME, else HOSTNAME, else `hostname`.
#   SAMPAN_SERVERS            every node, "id,host:replication_port,service_port"
#                             separated by ';'. Unset: built from SAMPAN_REPLICAS
#                             and SAMPAN_PEER_HOST_PATTERN.
#   SAMPAN_REPLICAS           how many nodes the cluster started with: ids 1..N.
#                             A node with a higher id (a scaled-up pod) lists
#                             itself too, and joins by `sampan-cli add-node`.
#   SAMPAN_PEER_HOST_PATTERN  a node's host name; {ordinal} becomes 0..N-1 and
#                             {id} 1..N: "sampan-{ordinal}.sampan.default.svc.cluster.local".
#   SAMPAN_BIND               the IP the listeners bind (default 0.0.0.0).
#   SAMPAN_REPLICATE_PORT     node-to-node port (default 4001). With
#                             SAMPAN_SHARDS=N, shard i listens on this + i.
#   SAMPAN_SERVICE_PORT       client port of sampan-cli (default 5001).
#   SAMPAN_REDIS_PORT         Redis port (default 6379; 0 turns it off).
#   SAMPAN_METRICS_PORT       /metrics and /health (default 9100).
#   SAMPAN_CLUSTER_ID         (default 1).
#   SAMPAN_SHARDS             executor threads (default 1; the same on every node).
#   SAMPAN_DATA_DIR           (default /data).
#   SAMPAN_BALANCE_LEADERS    true or false (default false).
#   SAMPAN_CONFIG_FILE        where the config is written (default
#                             /run/sampan/node.toml, mode 0600).
# The groups:
#   SAMPAN_GROUPS             how many KV groups: ids 1..N (default 1).
#   SAMPAN_MEMBERS            the voters the groups start with (default "1,2,3").
#                             Keep it when you scale: a node not in it starts
#                             with no groups and joins them by `sampan-cli add-member`.
#   SAMPAN_DURABILITY         sync or async (default sync).
# The secrets (each VAR may instead be read from the file named by VAR_FILE):
#   SAMPAN_CLUSTER_SECRET, SAMPAN_CLUSTER_SECRET_FILE    at least 16 bytes, the same on every node.
#   SAMPAN_ADMIN_TOKEN, SAMPAN_ADMIN_TOKEN_FILE          the admin token of the service port.
#   SAMPAN_ADMIN_USER                                    its name (default admin).
#   SAMPAN_CLIENT_TOKEN, SAMPAN_CLIENT_TOKEN_FILE        optional: a non-admin token.
#   SAMPAN_CLIENT_USER                                   its name (default app).
#   SAMPAN_REDIS_PASSWORD, SAMPAN_REDIS_PASSWORD_FILE    the Redis port's requirepass
#                                                        (needed unless SAMPAN_REDIS_PORT=0).
set -eu

me=sampan-entrypoint

die() {
    printf '%s: %s\n' "$me" "$*" >&2
    exit 64
}

say() {
    printf '%s: %s\n' "$me" "$*" >&2
}

# --- mode -------------------------------------------------------------------
print=${SAMPAN_PRINT_CONFIG:-0}
if [ "$#" -gt 0 ]; then
    case "$1" in
        --print) print=1; shift ;;
        --help|-h)
            sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        -*) exec sampan-node "$@" ;;
        *) exec "$@" ;;
    esac
fi
[ "$#" -eq 0 ] || die "unexpected arguments after --print: $*"

# --- helpers ----------------------------------------------------------------
nl='
'
cr=$(printf '\r')

is_uint() {
    case "$1" in
        ''|*[!0-9]*) return 1 ;;
        *) return 0 ;;
    esac
}

# uint NAME VALUE: VALUE must be a number (of the variable NAME).
uint() {
    is_uint "$2" || die "$1 must be a whole number, not '$2'"
}

# port NAME VALUE: a port 1..65535 (0 allowed if $3 is "zero").
port() {
    uint "$1" "$2"
    if [ "$2" -gt 65535 ] || { [ "$2" -eq 0 ] && [ "${3:-}" != zero ]; }; then
        die "$1 must be a port number (1..65535), not '$2'"
    fi
}

# secret VAR: the value of VAR, or the contents of the file named by
# VAR_FILE (trailing newlines dropped); empty if neither is set.
secret() {
    eval "_v=\${$1:-}"
    eval "_f=\${$1_FILE:-}"
    if [ -n "$_f" ]; then
        [ -z "$_v" ] || die "set $1 or $1_FILE, not both"
        [ -r "$_f" ] || die "$1_FILE names '$_f', which cannot be read"
        _v=$(cat "$_f")
    fi
    case "$_v" in
        *"$nl"*|*"$cr"*) die "$1 must be one line" ;;
    esac
    printf '%s' "$_v"
}

# toml STRING: STRING as a TOML basic string, quotes included.
toml() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

# dec NUMBER: without leading zeros (the shell reads 010 as octal).
dec() {
    printf '%s' "$1" | sed -e 's/^0*\([0-9]\)/\1/'
}

bytes() {
    printf '%s' "$1" | wc -c | tr -d ' '
}

# --- the node's id ----------------------------------------------------------
node_id=${SAMPAN_NODE_ID:-}
if [ -z "$node_id" ]; then
    host=${SAMPAN_POD_NAME:-${HOSTNAME:-}}
    [ -n "$host" ] || host=$(hostname 2>/dev/null || true)
    ordinal=${host##*-}
    if [ "$ordinal" = "$host" ] || ! is_uint "$ordinal"; then
        die "cannot tell the node id: set SAMPAN_NODE_ID, or use a host name that ends in -ORDINAL (sampan-0 is node 1); the host name is '$host'"
    fi
    node_id=$(($(dec "$ordinal") + 1))
fi
uint SAMPAN_NODE_ID "$node_id"
[ "$node_id" -gt 0 ] || die "SAMPAN_NODE_ID must be > 0"
node_id=$(dec "$node_id")

# --- ports and servers ------------------------------------------------------
replicate_port=${SAMPAN_REPLICATE_PORT:-4001}
service_port=${SAMPAN_SERVICE_PORT:-5001}
redis_port=${SAMPAN_REDIS_PORT:-6379}
metrics_port=${SAMPAN_METRICS_PORT:-9100}
port SAMPAN_REPLICATE_PORT "$replicate_port"
port SAMPAN_SERVICE_PORT "$service_port"
port SAMPAN_REDIS_PORT "$redis_port" zero
port SAMPAN_METRICS_PORT "$metrics_port"
bind=${SAMPAN_BIND:-0.0.0.0}
case "$bind" in
    *:*) metrics_addr="[$bind]:$metrics_port" ;;
    *) metrics_addr="$bind:$metrics_port" ;;
esac
cluster_id=${SAMPAN_CLUSTER_ID:-1}
uint SAMPAN_CLUSTER_ID "$cluster_id"
shards=${SAMPAN_SHARDS:-1}
uint SAMPAN_SHARDS "$shards"
data_dir=${SAMPAN_DATA_DIR:-/data}
balance=${SAMPAN_BALANCE_LEADERS:-false}
case "$balance" in
    true|false) ;;
    *) die "SAMPAN_BALANCE_LEADERS must be true or false, not '$balance'" ;;
esac

servers=${SAMPAN_SERVERS:-}
if [ -z "$servers" ]; then
    replicas=${SAMPAN_REPLICAS:-}
    pattern=${SAMPAN_PEER_HOST_PATTERN:-}
    [ -n "$replicas" ] || die "set SAMPAN_SERVERS, or SAMPAN_REPLICAS and SAMPAN_PEER_HOST_PATTERN: SAMPAN_REPLICAS is not set"
    [ -n "$pattern" ] || die "set SAMPAN_SERVERS, or SAMPAN_REPLICAS and SAMPAN_PEER_HOST_PATTERN: SAMPAN_PEER_HOST_PATTERN is not set"
    uint SAMPAN_REPLICAS "$replicas"
    [ "$replicas" -gt 0 ] || die "SAMPAN_REPLICAS must be > 0"
    i=0
    while [ "$i" -lt "$replicas" ]; do
        id=$((i + 1))
        h=$(printf '%s' "$pattern" | sed -e "s/{ordinal}/$i/g" -e "s/{id}/$id/g")
        entry="$id,$h:$replicate_port,$service_port"
        servers="${servers:+$servers;}$entry"
        i=$id
    done
    # A node past the first SAMPAN_REPLICAS (a StatefulSet scaled up)
    # lists itself too: it starts knowing only itself and joins the
    # cluster by `sampan-cli add-node`, which tells every node its address.
    if [ "$node_id" -gt "$replicas" ]; then
        h=$(printf '%s' "$pattern" | sed -e "s/{ordinal}/$((node_id - 1))/g" -e "s/{id}/$node_id/g")
        servers="$servers;$node_id,$h:$replicate_port,$service_port"
    fi
fi
case "$servers" in
    *'"'*|*'\'*|*"$nl"*) die "SAMPAN_SERVERS holds a quote, a backslash or a newline" ;;
esac

# The ids in servers, one per line.
server_ids=$(printf '%s\n' "$servers" | tr ';' '\n' | sed -e 's/^[[:space:]]*//' -e '/^$/d' -e 's/,.*//')
listed() {
    printf '%s\n' "$server_ids" | grep -qx "$1"
}
listed "$node_id" || die "node $node_id is not in the servers list ($servers): check SAMPAN_NODE_ID and SAMPAN_REPLICAS"

# --- groups -----------------------------------------------------------------
groups=${SAMPAN_GROUPS:-1}
uint SAMPAN_GROUPS "$groups"
members=$(printf '%s' "${SAMPAN_MEMBERS:-1,2,3}" | tr -d ' ')
durability=${SAMPAN_DURABILITY:-sync}
case "$durability" in
    sync|async) ;;
    *) die "SAMPAN_DURABILITY must be sync or async, not '$durability'" ;;
esac
member=no
for m in $(printf '%s' "$members" | tr ',' ' '); do
    uint SAMPAN_MEMBERS "$m"
    listed "$m" || die "SAMPAN_MEMBERS names node $m, which is not in the servers list ($servers)"
    [ "$m" -ne "$node_id" ] || member=yes
done
[ -n "$members" ] || die "SAMPAN_MEMBERS is empty"

# --- secrets ----------------------------------------------------------------
cluster_secret=$(secret SAMPAN_CLUSTER_SECRET SAMPAN_CLUSTER_SECRET_FILE)
[ -n "$cluster_secret" ] || die "SAMPAN_CLUSTER_SECRET (or SAMPAN_CLUSTER_SECRET_FILE) is not set: every node needs the same secret of at least 16 bytes (openssl rand -hex 32)"
[ "$(bytes "$cluster_secret")" -ge 16 ] || die "SAMPAN_CLUSTER_SECRET is shorter than 16 bytes"
admin_token=$(secret SAMPAN_ADMIN_TOKEN SAMPAN_ADMIN_TOKEN_FILE)
[ -n "$admin_token" ] || die "SAMPAN_ADMIN_TOKEN (or SAMPAN_ADMIN_TOKEN_FILE) is not set: sampan-cli --user ${SAMPAN_ADMIN_USER:-admin} proves it (in SAMPAN_TOKEN) for admin commands"
admin_user=${SAMPAN_ADMIN_USER:-admin}
client_token=$(secret SAMPAN_CLIENT_TOKEN SAMPAN_CLIENT_TOKEN_FILE)
client_user=${SAMPAN_CLIENT_USER:-app}
for u in "$admin_user" "$client_user"; do
    case "$u" in
        ''|*[!A-Za-z0-9_.-]*) die "user name '$u' (SAMPAN_ADMIN_USER, SAMPAN_CLIENT_USER) must be letters, digits, '_', '.' or '-'" ;;
    esac
done
redis_password=$(secret SAMPAN_REDIS_PASSWORD SAMPAN_REDIS_PASSWORD_FILE)
if [ "$redis_port" -ne 0 ] && [ -z "$redis_password" ]; then
    die "SAMPAN_REDIS_PASSWORD (or SAMPAN_REDIS_PASSWORD_FILE) is not set: the Redis port needs a password off loopback (or SAMPAN_REDIS_PORT=0)"
fi

# --- the config -------------------------------------------------------------
render() {
    cat <<EOF
# Written by sampan-entrypoint from the environment: node $node_id.

[server]
node_id = $node_id
servers = $(toml "$servers")
bind = $(toml "$bind")
cluster_id = $cluster_id
replicate_port = $replicate_port
service_port = $service_port
data_dir = $(toml "$data_dir")
shards = $shards
protected_mode = true
balance_leaders = $balance
cluster_secret = $(toml "$cluster_secret")

[[server.credential]]
name = $(toml "$admin_user")
token = $(toml "$admin_token")
admin = true
EOF
    if [ -n "$client_token" ]; then
        cat <<EOF

[[server.credential]]
name = $(toml "$client_user")
token = $(toml "$client_token")
admin = false
EOF
    fi
    cat <<EOF

[redis]
port = $redis_port
protected_mode = true
EOF
    if [ -n "$redis_password" ]; then
        printf 'requirepass = %s\n' "$(toml "$redis_password")"
    fi
    cat <<EOF

[metrics]
address = $(toml "$metrics_addr")
EOF
    if [ "$member" = yes ]; then
        g=1
        while [ "$g" -le "$groups" ]; do
            cat <<EOF

[[group]]
group_id = $g
members = $(toml "$members")
durability = $(toml "$durability")
EOF
            g=$((g + 1))
        done
    else
        printf '\n# Node %s is not in SAMPAN_MEMBERS (%s): it starts with no groups;\n' "$node_id" "$members"
        printf '# sampan-cli add-member %s --at HOST:%s adds it to a group.\n' "$node_id" "$service_port"
    fi
}

if [ "$print" = 1 ]; then
    render
    exit 0
fi

if [ "$member" = no ]; then
    say "node $node_id is not in SAMPAN_MEMBERS ($members): starting with no groups of its own; add it with sampan-cli add-member (groups it was added to at runtime run again)"
fi
file=${SAMPAN_CONFIG_FILE:-/run/sampan/node.toml}
umask 077
mkdir -p "$(dirname "$file")"
render >"$file.tmp"
mv "$file.tmp" "$file"
say "node $node_id, servers $servers, $groups group(s), config $file"
exec sampan-node --config "$file"
