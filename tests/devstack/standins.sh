# shellcheck shell=bash
# Stand-ins for the devstack helpers the plugin calls, for running its
# phases in a sandbox.  Every call is appended to $SANDBOX/calls; iniset
# really edits ini files; run_process really starts the command.

function _record { echo "$*" >> "$SANDBOX/calls"; }

function echo_summary { _record "echo_summary $*"; }
function die { _record "die $*"; echo "die: $*" >&2; exit 1; }
function trueorfalse {
    local default=$1 name=$2 value
    value=${!name:-$default}
    case "${value,,}" in
        1|yes|true|on) echo True ;;
        0|no|false|off) echo False ;;
        *) echo "$default" ;;
    esac
}
function enable_service { _record "enable_service $*"; ENABLED_SERVICES+=",$*"; }
function is_service_enabled {
    local s
    for s in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$s,"* ]] && return 0
    done
    return 1
}
function install_package { _record "install_package $*"; }
function setup_develop { _record "setup_develop $*"; }
function get_python_exec_prefix { echo "$SANDBOX_BIN"; }
# Runs the command as this (root) user; "sysctl" is only recorded, the
# sandbox must not change the host.
function sudo {
    _record "sudo $*"
    if [[ "$1" == sysctl ]]; then return 0; fi
    "$@"
}
function iniset {
    local sudo_flag=""
    if [[ "$1" == "-sudo" ]]; then sudo_flag="-sudo"; shift; fi
    _record "iniset $sudo_flag $*"
    python3 "$SANDBOX_TOOLS/ini.py" set "$@"
}
function run_process {
    local name=$1 command=$2 group=$3 user=$4
    _record "run_process $name user=$user group=$group"
    # shellcheck disable=SC2086  # the command line, split as devstack does
    setsid $command > "$SANDBOX/$name.out" 2>&1 < /dev/null &
    echo $! > "$SANDBOX/$name.pid"
}
function stop_process {
    local name=$1 pid
    _record "stop_process $name"
    pid=$(cat "$SANDBOX/$name.pid")
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    echo "stop_process: $name needed SIGKILL after $i tries" >&2
}
function openstack {
    _record "openstack $*"
    if [[ "$1 $2" == "flavor show" ]]; then
        [[ -e "$SANDBOX/flavor-$3" ]]
        return
    fi
    if [[ "$1 $2" == "flavor create" ]]; then
        touch "$SANDBOX/flavor-$3"
    fi
}
