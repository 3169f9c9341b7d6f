/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --like-qemu profiles: what each QEMU version's vhost-user-blk negotiated
 * with our target under a real guest.  tests/e2e/test_vhost_guest.py
 * records them in tests/data/qemu_vhost_features.json and checks them on
 * every run; native/Makefile turns that file into qemu_profiles.h, so the
 * profile is the recording and cannot drift from it.
 */
#include <inttypes.h>
#include <string.h>

#include "qemu_profiles.h"
#include "vhost_initiator.h"

static const struct vi_qemu_profile g_profiles[] = { VI_QEMU_PROFILES };

const struct vi_qemu_profile *
vi_qemu_profile_find(const char *version)
{
	size_t i;

	for (i = 0; i < sizeof(g_profiles) / sizeof(g_profiles[0]); i++) {
		if (strcmp(g_profiles[i].version, version) == 0) {
			return &g_profiles[i];
		}
	}
	return NULL;
}

void
vi_qemu_profile_list(FILE *f)
{
	size_t i;

	for (i = 0; i < sizeof(g_profiles) / sizeof(g_profiles[0]); i++) {
		fprintf(f, "%s features 0x%" PRIx64 " protocol_features 0x%" PRIx64 "\n",
			g_profiles[i].version, g_profiles[i].features,
			g_profiles[i].protocol_features);
	}
}
