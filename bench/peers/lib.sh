# Shared by bench/peers/* and bench/compare: logging, free ports, waiting.
# shellcheck shell=bash

log() { printf '%s: %s\n' "${log_name:-peers}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A TCP port on 127.0.0.1 that no socket uses now, below the kernel's
# ephemeral range (32768 up here), so that no client's connection can hold it
# in TIME-WAIT: Dovecot's listeners then fail with "Address already in use".
free_port() {
    local port attempt
    for attempt in $(seq 1 200); do
        port=$((20000 + RANDOM % 12000))
        if ! ss -Htan "sport = :$port" 2>/dev/null | grep -q .; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found in 200 tries"
}

# Waits up to $3 seconds (default 30) for host:port $1 to print a line
# starting with $2 (a greeting), while process $4 (if given) lives.
wait_greeting() {
    local address=$1 want=$2 limit=${3:-30} pid=${4:-} tries line
    for tries in $(seq 1 $((limit * 10))); do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            die "process $pid exited before $address answered"
        fi
        line=$( (exec 9<>"/dev/tcp/${address%:*}/${address##*:}" && read -r -t 5 line <&9 && echo "$line") 2>/dev/null || true)
        [[ $line == "$want"* ]] && return 0
        sleep 0.1
    done
    die "$address did not greet with '$want' within $limit s"
}

# SIGTERM to the process in pid file $1, then up to $2 s (default 30),
# then SIGKILL. Only that process: its children are its to stop.
stop_pidfile() {
    local file=$1 limit=${2:-30} pid tries
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    rm -f "$file"
    kill -TERM "$pid" 2>/dev/null || return 0
    for tries in $(seq 1 $((limit * 10))); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "process $pid still running $limit s after SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}
