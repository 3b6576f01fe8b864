// The RDP gateway's FreeRDP layer. See include/gh_rdp.h for the design.
#include "gh_rdp_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>
#include <time.h>

#include <freerdp/freerdp.h>
#include <freerdp/listener.h>
#include <freerdp/peer.h>
#include <freerdp/error.h>
#include <freerdp/gdi/gdi.h>
#include <freerdp/codec/planar.h>
#include <freerdp/codec/interleaved.h>
#include <freerdp/codec/region.h>
#include <winpr/synch.h>
#include <winpr/wlog.h>
#include <winpr/ssl.h>
#include <winpr/ntlm.h>
#include <winpr/sspi.h>
#include <freerdp/addin.h>
#include <freerdp/channels/channels.h>
#include <freerdp/client/channels.h>
#include <winpr/wtsapi.h>

uint64_t gh_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void gh_copy_string(char *dst, size_t size, const char *src) {
    if (size == 0) return;
    snprintf(dst, size, "%s", src ? src : "");
}

// ---------------------------------------------------------------- session lifetime

void gh_rdp_session_retain(gh_rdp_session *s) { atomic_fetch_add(&s->refs, 1); }

void gh_rdp_session_release(gh_rdp_session *s) {
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    CloseHandle(s->abort_event);
    CloseHandle(s->wake_event);
    pthread_mutex_destroy(&s->fb_lock);
    pthread_mutex_destroy(&s->input_lock);
    pthread_mutex_destroy(&s->clip_lock);
    region16_uninit(&s->user_dirty);
    region16_uninit(&s->record_dirty);
    if (s->planar) freerdp_bitmap_planar_context_free(s->planar);
    if (s->interleaved) bitmap_interleaved_context_free(s->interleaved);
    free(s->tiles);
    memset(s->target_info.password, 0, sizeof(s->target_info.password));
    memset(s->nla_password, 0, sizeof(s->nla_password));
    free(s);
}

void gh_rdp_session_terminate(gh_rdp_session *s, uint32_t code) {
    unsigned expected = 0;
    atomic_compare_exchange_strong(&s->terminate_code, &expected, code ? code : GH_RDP_REASON_ADMIN);
    SetEvent(s->abort_event);
}

static gh_rdp_session *session_new(gh_rdp_server *server, freerdp_peer *peer) {
    gh_rdp_session *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    atomic_init(&s->refs, 1);
    atomic_init(&s->terminate_code, 0);
    s->cb = server->callbacks;
    gh_copy_string(s->certificate_file, sizeof(s->certificate_file), server->certificate_file);
    gh_copy_string(s->private_key_file, sizeof(s->private_key_file), server->private_key_file);
    s->nla = server->nla;
    s->clipboard = server->clipboard;
    s->peer = peer;
    s->abort_event = CreateEventA(NULL, TRUE, FALSE, NULL);
    s->wake_event = CreateEventA(NULL, TRUE, FALSE, NULL);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->fb_lock, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_mutex_init(&s->input_lock, NULL);
    pthread_mutex_init(&s->clip_lock, NULL);
    region16_init(&s->user_dirty);
    region16_init(&s->record_dirty);
    s->planar = freerdp_bitmap_planar_context_new(PLANAR_FORMAT_HEADER_NA | PLANAR_FORMAT_HEADER_RLE, GH_TILE, GH_TILE);
    s->interleaved = bitmap_interleaved_context_new(TRUE);
    s->tiles = malloc((size_t)GH_BATCH * GH_TILE_BUFFER);
    if (!s->abort_event || !s->wake_event || !s->planar || !s->interleaved || !s->tiles) {
        gh_rdp_session_release(s);
        return NULL;
    }
    return s;
}

void gh_end_with(gh_rdp_session *s, const char *reason) {
    if (s->end_reason[0] == 0) gh_copy_string(s->end_reason, sizeof(s->end_reason), reason);
}

// ---------------------------------------------------------------- user leg (peer)

static gh_rdp_session *peer_session(rdpContext *context) { return ((gh_peer_context *)context)->session; }

static BOOL peer_post_connect(freerdp_peer *peer) {
    gh_rdp_session *s = peer_session(peer->context);
    rdpSettings *settings = peer->settings;
    char token[256] = { 0 };
    DWORD length = 0;
    const char *raw = freerdp_nego_get_routing_token(peer->context, &length);
    if (raw && length > 0) {
        const char *prefix = "Cookie: msts=";
        size_t skip = (length > strlen(prefix) && strncmp(raw, prefix, strlen(prefix)) == 0) ? strlen(prefix) : 0;
        size_t n = 0;
        for (size_t i = skip; i < length && n + 1 < sizeof(token); i++) {
            if (raw[i] == '\r' || raw[i] == '\n' || raw[i] == 0) break;
            token[n++] = raw[i];
        }
    }
    gh_rdp_logon logon = {
        .username = s->nla_done ? s->nla_user : settings->Username,
        .domain = s->nla_done ? s->nla_domain : settings->Domain,
        .password = s->nla_done ? s->nla_password : settings->Password,
        .nla = s->nla_done,
        .routing_token = token[0] ? token : NULL,
        .client_address = peer->hostname,
        .client_hostname = settings->ClientHostname,
        .client_build = settings->ClientBuild,
        .width = settings->DesktopWidth,
        .height = settings->DesktopHeight,
        .color_depth = settings->ColorDepth,
    };
    char reason[400] = { 0 };
    uint32_t code = GH_RDP_REASON_PRIVILEGES;
    memset(&s->target_info, 0, sizeof(s->target_info));
    s->ctx = s->cb.logon(s->cb.server_context, s, &logon, &s->target_info, reason, sizeof(reason), &code);
    if (settings->Password) memset(settings->Password, 0, strlen(settings->Password));
    memset(s->nla_password, 0, sizeof(s->nla_password));
    if (!s->ctx) {
        s->refused_code = code ? code : GH_RDP_REASON_PRIVILEGES;
        gh_end_with(s, reason[0] ? reason : "refused");
        return TRUE; // the loop tells the client why, then closes
    }
    if (s->clipboard) gh_clip_server_start(s);
    if (!gh_asset_start(s, settings->DesktopWidth, settings->DesktopHeight)) {
        s->refused_code = GH_RDP_REASON_DENIED;
        gh_end_with(s, "cannot start the connection to the asset");
    }
    return TRUE;
}

static void utf16_to_utf8(const UINT16 *text, UINT32 length, char *out, size_t size) {
    out[0] = 0;
    if (!text || length == 0) return;
    char *converted = NULL;
    if (ConvertFromUnicode(CP_UTF8, 0, (LPCWSTR)text, (int)length, &converted, 0, NULL, NULL) > 0 && converted) {
        gh_copy_string(out, size, converted);
        memset(converted, 0, strlen(converted));
    }
    free(converted);
}

/// CredSSP delegated the user's credentials: keep them for the logon callback.
static BOOL peer_logon(freerdp_peer *peer, SEC_WINNT_AUTH_IDENTITY *identity, BOOL automatic) {
    (void)automatic;
    gh_rdp_session *s = peer_session(peer->context);
    if (!identity) return TRUE;
    utf16_to_utf8(identity->User, identity->UserLength, s->nla_user, sizeof(s->nla_user));
    utf16_to_utf8(identity->Domain, identity->DomainLength, s->nla_domain, sizeof(s->nla_domain));
    utf16_to_utf8(identity->Password, identity->PasswordLength, s->nla_password, sizeof(s->nla_password));
    s->nla_done = s->nla_user[0] != 0;
    return TRUE;
}

/// NTLM inside CredSSP: the NTLMv2 hash of the user's one-time RDP password. WinPR 2 reads
/// the result as a boolean (non-zero: the hash is filled), not as a SECURITY_STATUS.
static SECURITY_STATUS peer_compute_ntlm_hash(void *client, const SEC_WINNT_AUTH_IDENTITY *identity,
                                              const SecBuffer *proof, const BYTE *randkey, const BYTE *mic,
                                              const SecBuffer *mic_value, BYTE *ntlm_hash) {
    (void)proof; (void)randkey; (void)mic; (void)mic_value;
    freerdp_peer *peer = client;
    gh_rdp_session *s = peer_session(peer->context);
    if (!identity || !s->cb.nla_hash) return 0;
    char user[256];
    utf16_to_utf8(identity->User, identity->UserLength, user, sizeof(user));
    BYTE v1[16];
    if (!s->cb.nla_hash(s->cb.server_context, user, v1)) return 0;
    BOOL ok = NTOWFv2FromHashW(v1, (LPWSTR)identity->User, identity->UserLength * 2, (LPWSTR)identity->Domain,
                               identity->DomainLength * 2, ntlm_hash);
    memset(v1, 0, sizeof(v1));
    return ok ? 1 : 0;
}

void gh_rdp_return_free_memory(void) { malloc_trim(0); }

int gh_rdp_nt_hash(const char *password, uint8_t nt_hash[16]) {
    winpr_InitializeSSL(WINPR_SSL_INIT_DEFAULT); // MD4 lives in OpenSSL 3's legacy provider
    return NTOWFv1A((LPSTR)password, (UINT32)strlen(password), nt_hash) ? 1 : 0;
}

static BOOL peer_activate(freerdp_peer *peer) {
    gh_rdp_session *s = peer_session(peer->context);
    pthread_mutex_lock(&s->fb_lock);
    if (s->target_state == TARGET_CONNECTED && peer->settings->DesktopWidth == s->fb_width &&
        peer->settings->DesktopHeight == s->fb_height) {
        s->peer_active = 1;
        region16_clear(&s->user_dirty);
        RECTANGLE_16 all = { 0, 0, (UINT16)s->fb_width, (UINT16)s->fb_height };
        region16_union_rect(&s->user_dirty, &s->user_dirty, &all);
    } else {
        s->peer_active = 2; // active, but not (yet) at the asset's size
    }
    pthread_mutex_unlock(&s->fb_lock);
    SetEvent(s->wake_event);
    return TRUE;
}

static BOOL with_target(gh_rdp_session *s, BOOL (*send)(gh_rdp_session *, rdpInput *, UINT16, UINT16, UINT16),
                        UINT16 flags, UINT16 a, UINT16 b) {
    BOOL ok = TRUE;
    pthread_mutex_lock(&s->input_lock);
    if (s->target_state == TARGET_CONNECTED && s->target) ok = send(s, s->target->input, flags, a, b);
    pthread_mutex_unlock(&s->input_lock);
    (void)ok;
    return TRUE; // a lost key on a closing asset leg must not end the user's loop
}

static BOOL send_sync(gh_rdp_session *s, rdpInput *in, UINT16 flags, UINT16 a, UINT16 b) {
    (void)s; (void)a; (void)b;
    return freerdp_input_send_synchronize_event(in, flags);
}
static BOOL send_key(gh_rdp_session *s, rdpInput *in, UINT16 flags, UINT16 code, UINT16 b) {
    (void)s; (void)b;
    return freerdp_input_send_keyboard_event(in, flags, code);
}
static BOOL send_unicode(gh_rdp_session *s, rdpInput *in, UINT16 flags, UINT16 code, UINT16 b) {
    (void)s; (void)b;
    return freerdp_input_send_unicode_keyboard_event(in, flags, code);
}
static BOOL send_mouse(gh_rdp_session *s, rdpInput *in, UINT16 flags, UINT16 x, UINT16 y) {
    (void)s;
    return freerdp_input_send_mouse_event(in, flags, x, y);
}
static BOOL send_xmouse(gh_rdp_session *s, rdpInput *in, UINT16 flags, UINT16 x, UINT16 y) {
    (void)s;
    return freerdp_input_send_extended_mouse_event(in, flags, x, y);
}

static BOOL peer_synchronize(rdpInput *input, UINT32 flags) {
    return with_target(peer_session(input->context), send_sync, (UINT16)flags, 0, 0);
}
static BOOL peer_keyboard(rdpInput *input, UINT16 flags, UINT16 code) {
    return with_target(peer_session(input->context), send_key, flags, code, 0);
}
static BOOL peer_unicode(rdpInput *input, UINT16 flags, UINT16 code) {
    return with_target(peer_session(input->context), send_unicode, flags, code, 0);
}
static void note_pointer(gh_rdp_session *s, UINT16 x, UINT16 y) {
    s->pointer_x = x;
    s->pointer_y = y;
    s->pointer_moved = 1;
}
static BOOL peer_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y) {
    gh_rdp_session *s = peer_session(input->context);
    note_pointer(s, x, y);
    return with_target(s, send_mouse, flags, x, y);
}
static BOOL peer_extended_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y) {
    gh_rdp_session *s = peer_session(input->context);
    note_pointer(s, x, y);
    return with_target(s, send_xmouse, flags, x, y);
}

static BOOL peer_refresh_rect(rdpContext *context, BYTE count, const RECTANGLE_16 *areas) {
    gh_rdp_session *s = peer_session(context);
    pthread_mutex_lock(&s->fb_lock);
    for (BYTE i = 0; i < count; i++) {
        RECTANGLE_16 r = areas[i];
        if (r.right > s->fb_width) r.right = (UINT16)s->fb_width;
        if (r.bottom > s->fb_height) r.bottom = (UINT16)s->fb_height;
        if (r.right > r.left && r.bottom > r.top) region16_union_rect(&s->user_dirty, &s->user_dirty, &r);
    }
    pthread_mutex_unlock(&s->fb_lock);
    SetEvent(s->wake_event);
    return TRUE;
}

static BOOL peer_suppress_output(rdpContext *context, BYTE allow, const RECTANGLE_16 *area) {
    (void)context; (void)allow; (void)area;
    return TRUE;
}

/// Work for the user's thread after a wake-up: resize the client to the asset's desktop,
/// send what changed, hand frames to the recorder. Returns the ms until the next recorded
/// frame is due, or INFINITE; sets *fail when the recorder refused a frame.
static DWORD pump(gh_rdp_session *s, int *fail) {
    freerdp_peer *peer = s->peer;
    DWORD wait = INFINITE;
    pthread_mutex_lock(&s->fb_lock);
    if (s->target_state == TARGET_CONNECTED && s->fb_width > 0) {
        if (!s->announced) {
            s->announced = 1;
            if (s->cb.connected) s->cb.connected(s->ctx, s->fb_width, s->fb_height);
        }
        BOOL sized = peer->settings->DesktopWidth == s->fb_width && peer->settings->DesktopHeight == s->fb_height;
        if (!sized && !s->resize_sent && s->peer_active) {
            if (!peer->settings->DesktopResize) {
                gh_end_with(s, "the user's client cannot take the asset's desktop size");
                *fail = GH_RDP_REASON_DENIED;
                pthread_mutex_unlock(&s->fb_lock);
                return INFINITE;
            }
            peer->settings->DesktopWidth = s->fb_width;
            peer->settings->DesktopHeight = s->fb_height;
            s->resize_sent = 1;
            s->peer_active = 0;
            if (s->cb.resized && s->announced) s->cb.resized(s->ctx, s->fb_width, s->fb_height);
            peer->update->DesktopResize(peer->context);
        } else if (sized && s->peer_active == 2) {
            s->peer_active = 1;
            RECTANGLE_16 all = { 0, 0, (UINT16)s->fb_width, (UINT16)s->fb_height };
            region16_union_rect(&s->user_dirty, &s->user_dirty, &all);
        }
        if (s->peer_active == 1 && sized && !region16_is_empty(&s->user_dirty)) {
            UINT32 n = 0;
            const RECTANGLE_16 *rects = region16_rects(&s->user_dirty, &n);
            if (!gh_send_rects(s, rects, n)) {
                gh_end_with(s, "cannot send the desktop to the user's client");
                *fail = GH_RDP_REASON_DENIED;
            }
            region16_clear(&s->user_dirty);
        }
        if (!region16_is_empty(&s->record_dirty) || s->pointer_moved) {
            uint64_t now = gh_now_ms();
            uint64_t due = s->last_record_ms + GH_RECORD_INTERVAL_MS;
            if (now >= due) {
                s->last_record_ms = now;
                if (s->pointer_moved && s->cb.pointer) s->cb.pointer(s->ctx, s->pointer_x, s->pointer_y);
                s->pointer_moved = 0;
                if (!region16_is_empty(&s->record_dirty)) {
                    UINT32 n = 0;
                    const RECTANGLE_16 *rects = region16_rects(&s->record_dirty, &n);
                    gh_rdp_rect out[n > 0 ? n : 1];
                    for (UINT32 i = 0; i < n; i++) {
                        out[i].x = rects[i].left;
                        out[i].y = rects[i].top;
                        out[i].width = rects[i].right - rects[i].left;
                        out[i].height = rects[i].bottom - rects[i].top;
                    }
                    rdpGdi *gdi = s->target->context->gdi;
                    if (s->cb.frame && !s->cb.frame(s->ctx, gdi->primary_buffer, gdi->stride, s->fb_width, s->fb_height, out, n)) {
                        gh_end_with(s, "the recording failed: the session cannot go on unrecorded");
                        *fail = GH_RDP_REASON_DENIED;
                    }
                    region16_clear(&s->record_dirty);
                }
            } else {
                wait = (DWORD)(due - now);
            }
        }
    }
    pthread_mutex_unlock(&s->fb_lock);
    return wait;
}

static uint32_t asset_reason(gh_rdp_session *s) {
    UINT32 error = s->target_error;
    if (((error >> 16) & 0xFFFF) == FREERDP_ERROR_ERRINFO_CLASS && (error & 0xFFFF) != 0) return error & 0xFFFF;
    return s->announced ? GH_RDP_REASON_LOGOFF : GH_RDP_REASON_DENIED;
}

/// Tells the client why (an error info PDU, sent by Close with Deactivate All) and lets it
/// hang up first: a client still writing when the socket closes reports a network error
/// instead of the reason.
static void tell_and_close(freerdp_peer *peer, uint32_t code) {
    freerdp_set_error_info(peer->context->rdp, code);
    peer->Close(peer);
    uint64_t deadline = gh_now_ms() + 2000;
    while (gh_now_ms() < deadline) {
        HANDLE handles[MAXIMUM_WAIT_OBJECTS];
        DWORD count = peer->GetEventHandles(peer, handles, MAXIMUM_WAIT_OBJECTS);
        if (count == 0) break;
        WaitForMultipleObjects(count, handles, FALSE, 100);
        if (!peer->CheckFileDescriptor(peer)) break;
    }
}

static void *peer_thread_main(void *arg) {
    gh_rdp_session *s = arg;
    freerdp_peer *peer = s->peer;
    rdpSettings *settings = peer->settings;
    freerdp_settings_set_string(settings, FreeRDP_CertificateFile, s->certificate_file);
    freerdp_settings_set_string(settings, FreeRDP_PrivateKeyFile, s->private_key_file);
    freerdp_settings_set_string(settings, FreeRDP_RdpKeyFile, s->private_key_file);
    settings->RdpSecurity = FALSE;
    settings->TlsSecurity = TRUE;
    // Without NLA the credentials arrive in Client Info, inside TLS; with it, through CredSSP
    // against one-time RDP passwords (the gateway keeps no password-equivalent of the real ones).
    settings->NlaSecurity = s->nla ? TRUE : FALSE;
    settings->ColorDepth = 32;
    settings->RefreshRect = TRUE;
    settings->SuppressOutput = TRUE;
    settings->RemoteFxCodec = FALSE;
    settings->NSCodec = FALSE;
    settings->SupportGraphicsPipeline = FALSE;
    peer->PostConnect = peer_post_connect;
    peer->Logon = peer_logon;
    if (s->nla) peer->ComputeNtlmHash = peer_compute_ntlm_hash;
    peer->Activate = peer_activate;
    peer->input->SynchronizeEvent = peer_synchronize;
    peer->input->KeyboardEvent = peer_keyboard;
    peer->input->UnicodeKeyboardEvent = peer_unicode;
    peer->input->MouseEvent = peer_mouse;
    peer->input->ExtendedMouseEvent = peer_extended_mouse;
    peer->update->RefreshRect = peer_refresh_rect;
    peer->update->SuppressOutput = peer_suppress_output;

    s->vcm = WTSOpenServerA((LPSTR)peer->context);
    if (!peer->Initialize(peer)) {
        gh_end_with(s, "the TLS setup failed (certificate or key)");
    } else {
        DWORD wait = INFINITE;
        for (;;) {
            HANDLE handles[MAXIMUM_WAIT_OBJECTS];
            DWORD count = peer->GetEventHandles(peer, handles, MAXIMUM_WAIT_OBJECTS - 3);
            if (count == 0) { gh_end_with(s, "internal error: no event handles"); break; }
            handles[count++] = s->abort_event;
            handles[count++] = s->wake_event;
            if (s->vcm) handles[count++] = WTSVirtualChannelManagerGetEventHandle(s->vcm);
            if (WaitForMultipleObjects(count, handles, FALSE, wait == INFINITE ? 5000 : wait) == WAIT_FAILED) {
                gh_end_with(s, "internal error: wait failed");
                break;
            }
            ResetEvent(s->wake_event); // before the work, so a wake-up during it is not lost
            if (!peer->CheckFileDescriptor(peer)) { gh_end_with(s, "the user disconnected"); break; }
            if (s->vcm && !WTSVirtualChannelManagerCheckFileDescriptor(s->vcm)) { gh_end_with(s, "the user's virtual channels failed"); break; }
            uint32_t code = atomic_load(&s->terminate_code);
            if (code) { gh_end_with(s, "terminated"); tell_and_close(peer, code); break; }
            if (s->refused_code) { tell_and_close(peer, s->refused_code); break; }
            int fail = 0;
            wait = pump(s, &fail);
            if (fail) { tell_and_close(peer, (uint32_t)fail); break; }
            if (s->target_state == TARGET_ENDED) {
                gh_end_with(s, "the asset closed the connection");
                tell_and_close(peer, asset_reason(s));
                break;
            }
        }
    }
    SetEvent(s->abort_event);
    uint64_t sent = freerdp_get_transport_sent(peer->context, FALSE);
    gh_asset_free(s);
    gh_clip_server_stop(s);
    if (s->vcm) WTSCloseServer(s->vcm);
    s->vcm = NULL;
    peer->Disconnect(peer);
    if (s->ctx && s->cb.closed) s->cb.closed(s->ctx, s->end_reason, sent, s->bytes_to_asset);
    freerdp_peer_context_free(peer);
    freerdp_peer_free(peer);
    s->peer = NULL;
    gh_rdp_session_release(s);
    return NULL;
}

// ---------------------------------------------------------------- listener

static BOOL listener_peer_accepted(freerdp_listener *listener, freerdp_peer *peer) {
    gh_rdp_server *server = listener->info;
    gh_rdp_session *s = session_new(server, peer);
    if (!s) {
        freerdp_peer_free(peer);
        return FALSE;
    }
    peer->ContextSize = sizeof(gh_peer_context);
    if (!freerdp_peer_context_new(peer)) {
        s->peer = NULL;
        gh_rdp_session_release(s);
        freerdp_peer_free(peer);
        return FALSE;
    }
    ((gh_peer_context *)peer->context)->session = s;
    pthread_t thread;
    if (pthread_create(&thread, NULL, peer_thread_main, s) != 0) {
        freerdp_peer_context_free(peer);
        freerdp_peer_free(peer);
        s->peer = NULL;
        gh_rdp_session_release(s);
        return FALSE;
    }
    pthread_detach(thread);
    return TRUE;
}

static void *listener_thread_main(void *arg) {
    gh_rdp_server *server = arg;
    HANDLE handles[MAXIMUM_WAIT_OBJECTS];
    for (;;) {
        DWORD count = server->listener->GetEventHandles(server->listener, handles, MAXIMUM_WAIT_OBJECTS - 1);
        if (count == 0) break;
        handles[count++] = server->stop_event;
        if (WaitForMultipleObjects(count, handles, FALSE, INFINITE) == WAIT_FAILED) break;
        if (WaitForSingleObject(server->stop_event, 0) == WAIT_OBJECT_0) break;
        if (!server->listener->CheckFileDescriptor(server->listener)) break;
    }
    server->listener->Close(server->listener);
    return NULL;
}

static void init_once(void) {
    winpr_InitializeSSL(WINPR_SSL_INIT_DEFAULT);
    WTSRegisterWtsApiFunctionTable(FreeRDP_InitWtsApi()); // the user leg's virtual channels
    freerdp_register_addin_provider(freerdp_channels_load_static_addin_entry, 0); // the asset leg's
    // FreeRDP logs every self-signed asset certificate as an error before asking us; the
    // gateway logs its own verdicts. WLOG_LEVEL=DEBUG (FreeRDP's variable) brings it all back.
    if (!getenv("WLOG_LEVEL")) WLog_SetLogLevel(WLog_GetRoot(), WLOG_FATAL);
}

gh_rdp_server *gh_rdp_server_start(const gh_rdp_server_options *options, const gh_rdp_callbacks *callbacks,
                                   char *error, size_t error_size) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_once);
    gh_rdp_server *server = calloc(1, sizeof(*server));
    if (!server) { gh_copy_string(error, error_size, "out of memory"); return NULL; }
    server->callbacks = *callbacks;
    gh_copy_string(server->certificate_file, sizeof(server->certificate_file), options->certificate_file);
    gh_copy_string(server->private_key_file, sizeof(server->private_key_file), options->private_key_file);
    server->nla = options->nla && callbacks->nla_hash;
    server->clipboard = options->clipboard;
    server->stop_event = CreateEventA(NULL, TRUE, FALSE, NULL);
    server->listener = freerdp_listener_new();
    if (!server->stop_event || !server->listener) {
        gh_copy_string(error, error_size, "cannot create the RDP listener");
        goto fail;
    }
    server->listener->info = server;
    server->listener->PeerAccepted = listener_peer_accepted;
    if (!server->listener->Open(server->listener, options->host, options->port)) {
        snprintf(error, error_size, "cannot listen for RDP on %s:%u (in use, or not allowed)",
                 options->host ? options->host : "*", options->port);
        goto fail;
    }
    if (pthread_create(&server->thread, NULL, listener_thread_main, server) != 0) {
        gh_copy_string(error, error_size, "cannot start the RDP listener thread");
        server->listener->Close(server->listener);
        goto fail;
    }
    return server;
fail:
    if (server->listener) freerdp_listener_free(server->listener);
    if (server->stop_event) CloseHandle(server->stop_event);
    free(server);
    return NULL;
}

void gh_rdp_server_stop(gh_rdp_server *server) {
    SetEvent(server->stop_event);
    pthread_join(server->thread, NULL);
    freerdp_listener_free(server->listener);
    CloseHandle(server->stop_event);
    free(server);
}
