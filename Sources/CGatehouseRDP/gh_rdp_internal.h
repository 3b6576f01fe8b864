// Internal to the RDP layer: the session and server state shared by its C files.
#ifndef GH_RDP_INTERNAL_H
#define GH_RDP_INTERNAL_H

#include "gh_rdp.h"

#include <pthread.h>
#include <stdatomic.h>

#include <freerdp/freerdp.h>
#include <freerdp/listener.h>
#include <freerdp/peer.h>
#include <freerdp/codec/planar.h>
#include <freerdp/codec/interleaved.h>
#include <freerdp/codec/region.h>
#include <freerdp/client/cliprdr.h>
#include <freerdp/server/cliprdr.h>
#include <winpr/synch.h>

#define GH_TILE 64
#define GH_TILE_BUFFER (GH_TILE * GH_TILE * 4 + 256)
#define GH_BATCH 64
#define GH_RECORD_INTERVAL_MS 80 // about 12 recorded frames a second

enum { TARGET_IDLE, TARGET_CONNECTING, TARGET_CONNECTED, TARGET_ENDED };

struct gh_rdp_server {
    int nla;
    int clipboard;
    freerdp_listener *listener;
    gh_rdp_callbacks callbacks;
    char certificate_file[1024];
    char private_key_file[1024];
    HANDLE stop_event;
    pthread_t thread;
};

struct gh_rdp_session {
    atomic_int refs;
    gh_rdp_callbacks cb;
    char certificate_file[1024];
    char private_key_file[1024];
    int nla;
    int clipboard;
    // Credentials delegated through NLA (CredSSP), UTF-8; used instead of Client Info's.
    char nla_user[256], nla_domain[256], nla_password[512];
    int nla_done;
    void *ctx; // the Swift session; NULL until logon accepted it
    freerdp_peer *peer;
    freerdp *target;
    gh_rdp_target target_info;

    HANDLE abort_event; // manual reset: terminate or either leg gone
    HANDLE wake_event;  // manual reset (WinPR has no auto reset): the target painted, resized or connected
    pthread_t target_thread;
    int target_thread_started;

    // fb_lock guards the asset's framebuffer (gdi primary buffer), the dirty regions and
    // the state below. The asset thread holds it from BeginPaint to EndPaint.
    pthread_mutex_t fb_lock;
    int painting;
    REGION16 user_dirty;
    REGION16 record_dirty;
    uint32_t fb_width, fb_height;
    int target_state;
    UINT32 target_error; // FreeRDP last error of the asset leg
    int announced;       // connected callback sent
    int peer_active;     // the user's client is active at the framebuffer's size
    int resize_sent;
    int pointer_moved;
    uint16_t pointer_x, pointer_y;

    // input_lock: the user's input is sent to the asset only while it is connected.
    pthread_mutex_t input_lock;

    atomic_uint terminate_code;
    uint64_t bytes_to_asset;
    uint32_t refused_code;
    char end_reason[512];

    // Clipboard (gh_rdp_clipboard.c): the user's leg is a cliprdr server on the virtual
    // channel manager, the asset's a cliprdr client; text formats are relayed and recorded.
    HANDLE vcm;
    CliprdrServerContext *clip_server;
    CliprdrClientContext *clip_client;
    pthread_mutex_t clip_lock;
    UINT32 clip_upload_format;   // what the asset asked the user's clipboard for
    UINT32 clip_download_format; // what the user asked the asset's clipboard for

    BITMAP_PLANAR_CONTEXT *planar;
    BITMAP_INTERLEAVED_CONTEXT *interleaved;
    BYTE *tiles; // GH_BATCH buffers of GH_TILE_BUFFER bytes
    uint64_t last_record_ms;
};

typedef struct {
    rdpContext base;
    gh_rdp_session *session;
} gh_peer_context;

typedef struct {
    rdpContext base;
    gh_rdp_session *session;
} gh_client_context;


/// Shared helpers (gh_rdp.c).
uint64_t gh_now_ms(void);
void gh_copy_string(char *dst, size_t size, const char *src);
/// The first reason given is the one the session ends with.
void gh_end_with(gh_rdp_session *s, const char *reason);

/// The asset leg (gh_rdp_asset.c): connect on its own thread; stop and free it.
BOOL gh_asset_start(gh_rdp_session *s, uint32_t width, uint32_t height);
void gh_asset_free(gh_rdp_session *s);

/// The user leg's encoder (gh_rdp_encode.c). Called with fb_lock held.
BOOL gh_send_rects(gh_rdp_session *s, const RECTANGLE_16 *rects, UINT32 count);

/// Clipboard relay (gh_rdp_clipboard.c).
void gh_clip_client_prepare(gh_rdp_session *s, freerdp *instance);
void gh_clip_server_start(gh_rdp_session *s);
void gh_clip_server_stop(gh_rdp_session *s);

#endif
