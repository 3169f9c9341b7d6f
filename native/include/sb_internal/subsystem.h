/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Start/stop hooks of each engine subsystem, called in order by
 * native/lib/engine/engine.c.  Not part of the public API.
 */
#ifndef SB_INTERNAL_SUBSYSTEM_H
#define SB_INTERNAL_SUBSYSTEM_H

#include "sb/thread.h"

/** Spawn and pin the reactor threads. Non-reactor thread. */
int sb_reactors_start(const struct sb_engine_opts *opts);
/** Stop and join every reactor; pending messages are run first. */
void sb_reactors_stop(void);

/** module_init of every registered bdev module, on the app reactor. */
int sb_bdev_subsystem_init(void);
/** Unregister every bdev, then module_fini; on the app reactor. */
void sb_bdev_subsystem_fini(void);

/** Start the vhost control thread. */
int sb_vhost_subsystem_init(void);
/** Delete every controller (forced) and stop the control thread. */
void sb_vhost_subsystem_fini(void);

#endif
