/*-------------------------------------------------------------------------
 *
 * marker_sweep.h
 *		The worker's sweep of in-flight markers (marker_sweep.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_MARKER_SWEEP_H
#define RS_MARKER_SWEEP_H

#include "postgres.h"

/*
 * Sweep every in-flight marker hash of this database once; in a
 * transaction.  False when Redis failed (the sweep is tried again next
 * round).
 */
extern bool rs_sweep_markers(void);

#endif							/* RS_MARKER_SWEEP_H */
