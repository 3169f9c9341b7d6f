/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Weak stand-ins for the bdev and vhost start/stop hooks, so that a build
 * holding only the thread library (its unit tests, a partial tree) links.
 * The real hooks in lib/bdev and lib/vhost are strong symbols and replace
 * these wherever they are linked in.
 */
#include "sb_internal/subsystem.h"

__attribute__((weak)) int
sb_bdev_subsystem_init(void)
{
	return 0;
}

__attribute__((weak)) void
sb_bdev_subsystem_fini(void)
{
}

__attribute__((weak)) int
sb_vhost_subsystem_init(void)
{
	return 0;
}

__attribute__((weak)) void
sb_vhost_subsystem_fini(void)
{
}
