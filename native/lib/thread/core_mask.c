/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SPDK-style core masks: a hex bit mask ("0x3", "3") or a bracketed CPU
 * list ("[0,1]", "[0-3,6]").  The CPU list syntax is also the one of
 * /sys/devices/system/cpu/online, so the same parser reads that file.
 */
#include "sb/thread.h"
#include "sb/log.h"
#include "thread_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BITS_PER_WORD 64
#define MASK_WORDS (SB_MAX_CORES / BITS_PER_WORD)

struct core_set {
	uint64_t w[MASK_WORDS];
};

static void
_set_core(struct core_set *set, uint32_t core)
{
	set->w[core / BITS_PER_WORD] |= 1ULL << (core % BITS_PER_WORD);
}

static bool
_has_core(const struct core_set *set, uint32_t core)
{
	return (set->w[core / BITS_PER_WORD] >> (core % BITS_PER_WORD)) & 1;
}

static int
_hex_digit(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	return -1;
}

static int
_parse_hex(const char *s, struct core_set *set)
{
	size_t len, i;
	uint32_t bit;
	int d, b;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
	}
	len = strlen(s);
	if (len == 0) {
		SB_ERRLOG("core mask has no hex digits\n");
		return -EINVAL;
	}
	/* Least significant digit last: walk from the end, 4 CPUs per digit. */
	for (i = 0; i < len; i++) {
		d = _hex_digit(s[len - 1 - i]);
		if (d < 0) {
			SB_ERRLOG("core mask: '%c' is not a hex digit\n", s[len - 1 - i]);
			return -EINVAL;
		}
		for (b = 0; b < 4; b++) {
			if (!(d & (1 << b))) {
				continue;
			}
			bit = (uint32_t)(i * 4 + (size_t)b);
			if (i >= SB_MAX_CORES / 4) {
				SB_ERRLOG("core mask names a CPU >= %d\n", SB_MAX_CORES);
				return -EINVAL;
			}
			_set_core(set, bit);
		}
	}
	return 0;
}

static int
_parse_number(const char **p, uint32_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (!isdigit((unsigned char)*s)) {
		return -EINVAL;
	}
	while (isdigit((unsigned char)*s)) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v >= SB_MAX_CORES) {
			return -ERANGE;
		}
		s++;
	}
	*p = s;
	*out = (uint32_t)v;
	return 0;
}

/* "0-3,6" (no brackets); stops at end or at the character in stop. */
static int
_parse_list(const char *s, char stop, struct core_set *set, const char **end)
{
	uint32_t lo, hi, c;
	int rc;

	for (;;) {
		rc = _parse_number(&s, &lo);
		if (rc != 0) {
			goto bad;
		}
		hi = lo;
		if (*s == '-') {
			s++;
			rc = _parse_number(&s, &hi);
			if (rc != 0) {
				goto bad;
			}
			if (hi < lo) {
				SB_ERRLOG("core list: range %u-%u is reversed\n", lo, hi);
				return -EINVAL;
			}
		}
		for (c = lo; c <= hi; c++) {
			_set_core(set, c);
		}
		if (*s == ',') {
			s++;
			continue;
		}
		if (*s == stop) {
			*end = s;
			return 0;
		}
		SB_ERRLOG("core list: unexpected character '%c'\n", *s);
		return -EINVAL;
	}
bad:
	if (rc == -ERANGE) {
		SB_ERRLOG("core list names a CPU >= %d\n", SB_MAX_CORES);
	} else {
		SB_ERRLOG("core list: expected a CPU number at \"%s\"\n", s);
	}
	return -EINVAL;
}

static int
_parse_set(const char *mask, struct core_set *set)
{
	const char *end = NULL;
	int rc;

	memset(set, 0, sizeof(*set));
	if (mask == NULL || mask[0] == '\0') {
		SB_ERRLOG("core mask is empty\n");
		return -EINVAL;
	}
	if (mask[0] == '[') {
		rc = _parse_list(mask + 1, ']', set, &end);
		if (rc != 0) {
			return rc;
		}
		if (end[1] != '\0') {
			SB_ERRLOG("core mask: trailing characters after ']'\n");
			return -EINVAL;
		}
		return 0;
	}
	return _parse_hex(mask, set);
}

int
sb_parse_core_mask(const char *mask, uint32_t *cores, uint32_t max, uint32_t *count)
{
	struct core_set set;
	uint32_t c, n = 0;
	int rc;

	if (cores == NULL || count == NULL) {
		return -EINVAL;
	}
	rc = _parse_set(mask, &set);
	if (rc != 0) {
		return rc;
	}
	for (c = 0; c < SB_MAX_CORES; c++) {
		if (!_has_core(&set, c)) {
			continue;
		}
		if (n == max) {
			SB_ERRLOG("core mask \"%s\" names more than %u CPUs\n", mask, max);
			return -E2BIG;
		}
		cores[n++] = c;
	}
	if (n == 0) {
		SB_ERRLOG("core mask \"%s\" names no CPU\n", mask);
		return -EINVAL;
	}
	*count = n;
	return 0;
}

/** True when core is online (sysfs list, or below the online CPU count without sysfs). */
bool
sb_core_is_online(uint32_t core)
{
	struct core_set set;
	const char *end = NULL;
	char buf[4096];
	size_t n;
	FILE *f;
	long ncpu;

	if (core >= SB_MAX_CORES) {
		return false;
	}
	f = fopen("/sys/devices/system/cpu/online", "r");
	if (f != NULL) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		while (n > 0 && isspace((unsigned char)buf[n - 1])) {
			buf[--n] = '\0';
		}
		memset(&set, 0, sizeof(set));
		if (n > 0 && _parse_list(buf, '\0', &set, &end) == 0) {
			return _has_core(&set, core);
		}
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	return ncpu > 0 && core < (uint32_t)ncpu;
}
