# shellcheck shell=bash
# devstack plugin of spdk-backend: installs the project, runs the agent,
# configures Cinder backends of type spdk_vhost and Nova's compute driver,
# and points tempest at the shared-memory flavor.
#
# devstack sources this file as "plugin.sh MODE [PHASE]" (after settings,
# which defines the functions in lib/spdk-backend).

if [[ "$1" == "stack" ]]; then
    case "$2" in
        pre-install)
            if is_service_enabled spdk-backend-agent; then
                echo_summary "Installing spdk-backend packages"
                install_spdk_backend_packages
            fi
            ;;
        install)
            echo_summary "Installing spdk-backend"
            install_spdk_backend
            ;;
        post-config)
            if is_service_enabled spdk-backend-agent; then
                echo_summary "Configuring and starting spdk-backend-agent"
                configure_spdk_backend_agent
                configure_spdk_backend_hugepages
                start_spdk_backend_agent
            fi
            if is_service_enabled cinder; then
                # lib/cinder configured them already if it saw the function;
                # iniset is idempotent, so doing it again is harmless.
                for be_name in $(spdk_backend_cinder_backends); do
                    configure_cinder_backend_spdk_vhost "$be_name"
                done
            fi
            if is_service_enabled n-cpu && [[ "$SPDK_BACKEND_CONFIGURE_NOVA" == "True" ]]; then
                echo_summary "Configuring Nova for vhost-user-blk volumes"
                configure_nova_spdk_backend
            fi
            ;;
        extra)
            if is_service_enabled nova && [[ "$SPDK_BACKEND_CONFIGURE_NOVA" == "True" ]]; then
                echo_summary "Creating the hugepage flavor $SPDK_BACKEND_FLAVOR"
                create_spdk_backend_flavor
            fi
            ;;
        test-config)
            if is_service_enabled tempest && is_service_enabled nova && \
                    [[ "$SPDK_BACKEND_CONFIGURE_NOVA" == "True" ]]; then
                echo_summary "Pointing tempest at the flavor $SPDK_BACKEND_FLAVOR"
                configure_tempest_spdk_backend
            fi
            ;;
    esac
fi

if [[ "$1" == "unstack" ]]; then
    if is_service_enabled spdk-backend-agent; then
        stop_spdk_backend_agent
    fi
fi

if [[ "$1" == "clean" ]]; then
    cleanup_spdk_backend
fi
