# shellcheck shell=bash
# Stand-ins for the devstack helpers the plugin calls, for running its
# phases in a sandbox.  Every call is appended to $SANDBOX/calls; iniset
# really edits ini files; run_process really starts the command.
#
# The devstack_* functions at the end stand in for the steps of devstack's
# stack.sh around the plugin's phases that write the same files (test_plugin.py
# runs them in stack.sh's order); they are not recorded in $SANDBOX/calls.

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
# Nothing runs in the background here: devstack's async_wait only waits.
function async_wait { _record "async_wait $*"; }
# Flavors are files holding the id Nova would have chosen; "flavor show NAME
# -f value -c id" prints it.
function openstack {
    _record "openstack $*"
    if [[ "$1 $2" == "flavor show" ]]; then
        [[ -e "$SANDBOX/flavor-$3" ]] || return 1
        if [[ "$4 $5 $6 $7" == "-f value -c id" ]]; then
            cat "$SANDBOX/flavor-$3"
        fi
        return 0
    fi
    if [[ "$1 $2" == "flavor create" ]]; then
        cat /proc/sys/kernel/random/uuid > "$SANDBOX/flavor-$3"
    fi
}

# devstack's own steps, as far as they touch what the plugin writes.
function _devstack_iniset { python3 "$SANDBOX_TOOLS/ini.py" set "$@"; }

# lib/cinder configure_cinder: configure_cinder_backend_TYPE NAME for each
# CINDER_ENABLED_BACKENDS entry whose function exists.
function devstack_configure_cinder {
    is_service_enabled cinder || return 0
    local be
    for be in ${CINDER_ENABLED_BACKENDS//,/ }; do
        if type "configure_cinder_backend_${be%%:*}" >/dev/null 2>&1; then
            "configure_cinder_backend_${be%%:*}" "${be##*:}"
        fi
    done
}

# lib/nova configure_nova: create_nova_conf recreates nova.conf, then the
# libvirt hypervisor plugin sets its compute_driver there.
function devstack_configure_nova {
    is_service_enabled nova || return 0
    rm -f "$NOVA_CONF"
    _devstack_iniset "$NOVA_CONF" DEFAULT debug True
    if is_service_enabled n-cpu; then
        _devstack_iniset "$NOVA_CONF" DEFAULT compute_driver libvirt.LibvirtDriver
    fi
}

# lib/nova start_nova_compute: nova-cpu.conf is made by copying nova.conf
# over it, then devstack adds its compute-only options.
function devstack_start_nova_compute {
    is_service_enabled nova || return 0
    cp "$NOVA_CONF" "$NOVA_CPU_CONF"
    _devstack_iniset "$NOVA_CPU_CONF" DEFAULT reimage_timeout_per_gb 180
}

# lib/tempest configure_tempest (extras.d/80-tempest.sh, which run_phase runs
# before the plugins in the test-config phase): the flavors devstack makes
# for tempest, m1.nano (id 42) and m1.micro (id 84).
function devstack_configure_tempest {
    is_service_enabled tempest || return 0
    _devstack_iniset "$TEMPEST_CONFIG" compute flavor_ref 42
    _devstack_iniset "$TEMPEST_CONFIG" compute flavor_ref_alt 84
}
