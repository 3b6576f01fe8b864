// FreeRDP 2 (Debian 12: freerdp2-dev). Only GatehouseRDP's C layer includes it.
#include <freerdp/freerdp.h>
#include <freerdp/listener.h>
#include <freerdp/peer.h>
#include <freerdp/gdi/gdi.h>
#include <freerdp/codec/planar.h>
#include <freerdp/codec/interleaved.h>
#include <freerdp/codec/region.h>
#include <winpr/synch.h>
#include <winpr/thread.h>
