// The user leg's picture: changed regions of the asset's framebuffer as compressed bitmap
// updates (planar at 32 bpp, interleaved below), in 64x64 tiles, batched to fit the client.
#include "gh_rdp_internal.h"

#include <string.h>

#include <freerdp/gdi/gdi.h>

/// Sends the framebuffer's `rects` to the user as compressed bitmap updates, in batches
/// that fit the client's reassembly buffer. Called with fb_lock held.
BOOL gh_send_rects(gh_rdp_session *s, const RECTANGLE_16 *rects, UINT32 count) {
    freerdp_peer *peer = s->peer;
    rdpSettings *settings = peer->settings;
    rdpGdi *gdi = s->target->context->gdi;
    const BYTE *fb = gdi->primary_buffer;
    UINT32 stride = gdi->stride;
    UINT32 depth = settings->ColorDepth;
    if (depth != 32 && depth != 24 && depth != 16 && depth != 15) depth = 32;
    UINT32 limit = settings->MultifragMaxRequestSize;
    if (limit == 0 || limit > 0x3F0000) limit = 0x3F0000;
    if (limit < 0x4000) limit = 0x4000;
    limit -= 1024;

    BITMAP_DATA batch[GH_BATCH];
    UINT32 k = 0, bytes = 0;
    BOOL ok = TRUE;
#define FLUSH()                                                              \
    do {                                                                     \
        if (k > 0) {                                                         \
            BITMAP_UPDATE update = { 0 };                                    \
            update.count = update.number = k;                                \
            update.rectangles = batch;                                       \
            if (!peer->update->BitmapUpdate(peer->context, &update)) ok = FALSE; \
            k = 0;                                                           \
            bytes = 0;                                                       \
        }                                                                    \
    } while (0)

    for (UINT32 i = 0; i < count && ok; i++) {
        const RECTANGLE_16 *r = &rects[i];
        for (UINT32 top = r->top; top < r->bottom && ok; top += GH_TILE) {
            for (UINT32 left = r->left; left < r->right && ok; left += GH_TILE) {
                UINT32 x = left, y = top;
                UINT32 w = r->right - left < GH_TILE ? r->right - left : GH_TILE;
                UINT32 h = r->bottom - top < GH_TILE ? r->bottom - top : GH_TILE;
                // Codecs want at least 4x4: grow small tiles towards the origin.
                if (w < 4) { UINT32 grow = 4 - w; x = x >= grow ? x - grow : 0; w = 4; }
                if (h < 4) { UINT32 grow = 4 - h; y = y >= grow ? y - grow : 0; h = 4; }
                if (x + w > s->fb_width || y + h > s->fb_height) continue;
                if (bytes + GH_TILE_BUFFER > limit) FLUSH();
                BYTE *buffer = s->tiles + (size_t)k * GH_TILE_BUFFER;
                BITMAP_DATA *b = &batch[k];
                memset(b, 0, sizeof(*b));
                b->destLeft = x;
                b->destTop = y;
                b->destRight = x + w - 1;
                b->destBottom = y + h - 1;
                b->width = w;
                b->height = h;
                b->compressed = TRUE;
                if (depth == 32) {
                    UINT32 size = GH_TILE_BUFFER;
                    const BYTE *src = fb + (size_t)y * stride + (size_t)x * 4;
                    if (!freerdp_bitmap_compress_planar(s->planar, src, gdi->dstFormat, w, h, stride, buffer, &size))
                        { ok = FALSE; break; }
                    b->bitmapLength = size;
                    b->bitsPerPixel = 32;
                    b->cbScanWidth = w * 4;
                    b->cbUncompressedSize = w * h * 4;
                } else {
                    UINT32 size = GH_TILE_BUFFER;
                    UINT32 bytesPerPixel = (depth + 7) / 8;
                    if (!interleaved_compress(s->interleaved, buffer, &size, w, h, fb, gdi->dstFormat, stride, x, y, NULL, depth))
                        { ok = FALSE; break; }
                    b->bitmapLength = size;
                    b->bitsPerPixel = depth;
                    b->cbScanWidth = w * bytesPerPixel;
                    b->cbUncompressedSize = w * h * bytesPerPixel;
                }
                b->bitmapDataStream = buffer;
                b->cbCompMainBodySize = b->bitmapLength;
                bytes += b->bitmapLength + 32;
                k++;
                if (k == GH_BATCH) FLUSH();
            }
        }
    }
    if (ok) FLUSH();
#undef FLUSH
    return ok;
}

