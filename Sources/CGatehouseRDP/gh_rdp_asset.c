// The asset leg: a FreeRDP client with the software GDI. Its framebuffer is what the user is
// sent and what is recorded; this file marks what changed and runs the leg's thread.
#include "gh_rdp_internal.h"

#include <string.h>

#include <freerdp/gdi/gdi.h>
#include <freerdp/error.h>

static void mark_dirty(gh_rdp_session *s, UINT16 left, UINT16 top, UINT16 right, UINT16 bottom) {
    RECTANGLE_16 r = { left, top, right, bottom };
    if (r.right <= r.left || r.bottom <= r.top) return;
    region16_union_rect(&s->user_dirty, &s->user_dirty, &r);
    region16_union_rect(&s->record_dirty, &s->record_dirty, &r);
}

static void mark_all_dirty(gh_rdp_session *s) {
    mark_dirty(s, 0, 0, (UINT16)s->fb_width, (UINT16)s->fb_height);
}

static BOOL client_begin_paint(rdpContext *context) {
    gh_rdp_session *s = ((gh_client_context *)context)->session;
    rdpGdi *gdi = context->gdi;
    if (!s->painting) {
        pthread_mutex_lock(&s->fb_lock);
        s->painting = 1;
    }
    if (gdi && gdi->primary && gdi->primary->hdc && gdi->primary->hdc->hwnd) {
        gdi->primary->hdc->hwnd->invalid->null = TRUE;
        gdi->primary->hdc->hwnd->ninvalid = 0;
    }
    return TRUE;
}

static BOOL client_end_paint(rdpContext *context) {
    gh_rdp_session *s = ((gh_client_context *)context)->session;
    rdpGdi *gdi = context->gdi;
    if (gdi && gdi->primary && gdi->primary->hdc && gdi->primary->hdc->hwnd) {
        HGDI_WND hwnd = gdi->primary->hdc->hwnd;
        if (!hwnd->invalid->null) {
            for (INT32 i = 0; i < hwnd->ninvalid; i++) {
                HGDI_RGN r = &hwnd->cinvalid[i];
                INT32 x = r->x < 0 ? 0 : r->x, y = r->y < 0 ? 0 : r->y;
                INT32 right = r->x + r->w, bottom = r->y + r->h;
                if (right > (INT32)s->fb_width) right = (INT32)s->fb_width;
                if (bottom > (INT32)s->fb_height) bottom = (INT32)s->fb_height;
                if (right > x && bottom > y) mark_dirty(s, (UINT16)x, (UINT16)y, (UINT16)right, (UINT16)bottom);
            }
        }
        hwnd->invalid->null = TRUE;
        hwnd->ninvalid = 0;
    }
    if (s->painting) {
        s->painting = 0;
        pthread_mutex_unlock(&s->fb_lock);
    }
    SetEvent(s->wake_event);
    return TRUE;
}

static BOOL client_desktop_resize(rdpContext *context) {
    gh_rdp_session *s = ((gh_client_context *)context)->session;
    pthread_mutex_lock(&s->fb_lock);
    BOOL ok = gdi_resize(context->gdi, context->settings->DesktopWidth, context->settings->DesktopHeight);
    s->fb_width = context->gdi->width;
    s->fb_height = context->gdi->height;
    region16_clear(&s->user_dirty);
    region16_clear(&s->record_dirty);
    mark_all_dirty(s);
    s->resize_sent = 0;
    pthread_mutex_unlock(&s->fb_lock);
    SetEvent(s->wake_event);
    return ok;
}

static BOOL client_pre_connect(freerdp *instance) {
    gh_rdp_session *s = ((gh_client_context *)instance->context)->session;
    if (s->clipboard) gh_clip_client_prepare(s, instance);
    return TRUE;
}

static BOOL client_post_connect(freerdp *instance) {
    gh_rdp_session *s = ((gh_client_context *)instance->context)->session;
    if (!gdi_init(instance, PIXEL_FORMAT_BGRX32)) return FALSE;
    instance->update->BeginPaint = client_begin_paint;
    instance->update->EndPaint = client_end_paint;
    instance->update->DesktopResize = client_desktop_resize;
    pthread_mutex_lock(&s->fb_lock);
    s->fb_width = instance->context->gdi->width;
    s->fb_height = instance->context->gdi->height;
    mark_all_dirty(s);
    pthread_mutex_unlock(&s->fb_lock);
    pthread_mutex_lock(&s->input_lock);
    s->target_state = TARGET_CONNECTED;
    pthread_mutex_unlock(&s->input_lock);
    SetEvent(s->wake_event);
    return TRUE;
}

static BOOL client_authenticate(freerdp *instance, char **username, char **password, char **domain) {
    (void)instance; (void)username; (void)password; (void)domain;
    return FALSE; // stored credentials only: never prompt
}

static DWORD client_verify_certificate(freerdp *instance, const char *host, UINT16 port,
                                       const char *common_name, const char *subject,
                                       const char *issuer, const char *fingerprint, DWORD flags) {
    (void)common_name; (void)subject; (void)issuer; (void)flags;
    gh_rdp_session *s = ((gh_client_context *)instance->context)->session;
    if (!s->cb.verify_certificate) return 0;
    return s->cb.verify_certificate(s->ctx, host, port, fingerprint) ? 2 : 0;
}

static DWORD client_verify_changed_certificate(freerdp *instance, const char *host, UINT16 port,
                                               const char *common_name, const char *subject,
                                               const char *issuer, const char *new_fingerprint,
                                               const char *old_subject, const char *old_issuer,
                                               const char *old_fingerprint, DWORD flags) {
    (void)old_subject; (void)old_issuer; (void)old_fingerprint;
    return client_verify_certificate(instance, host, port, common_name, subject, issuer, new_fingerprint, flags);
}

static void *target_thread_main(void *arg) {
    gh_rdp_session *s = arg;
    freerdp *instance = s->target;
    if (!freerdp_connect(instance)) {
        UINT32 error = freerdp_get_last_error(instance->context);
        char reason[400];
        snprintf(reason, sizeof(reason), "cannot connect to the asset %s:%u: %s", s->target_info.host,
                 s->target_info.port, freerdp_get_last_error_string(error));
        pthread_mutex_lock(&s->input_lock);
        s->target_state = TARGET_ENDED;
        s->target_error = error;
        gh_end_with(s, reason);
        pthread_mutex_unlock(&s->input_lock);
        SetEvent(s->wake_event);
        return NULL;
    }
    HANDLE handles[MAXIMUM_WAIT_OBJECTS];
    for (;;) {
        DWORD count = freerdp_get_event_handles(instance->context, handles, MAXIMUM_WAIT_OBJECTS - 1);
        if (count == 0) break;
        handles[count++] = s->abort_event;
        DWORD status = WaitForMultipleObjects(count, handles, FALSE, 1000);
        if (status == WAIT_FAILED) break;
        if (WaitForSingleObject(s->abort_event, 0) == WAIT_OBJECT_0) break;
        if (!freerdp_check_event_handles(instance->context) || freerdp_shall_disconnect(instance)) {
            if (s->painting) {
                s->painting = 0;
                pthread_mutex_unlock(&s->fb_lock);
            }
            UINT32 error = freerdp_get_last_error(instance->context);
            pthread_mutex_lock(&s->input_lock);
            s->target_error = error;
            gh_end_with(s, "the asset closed the connection");
            pthread_mutex_unlock(&s->input_lock);
            break;
        }
    }
    if (s->painting) {
        s->painting = 0;
        pthread_mutex_unlock(&s->fb_lock);
    }
    pthread_mutex_lock(&s->input_lock);
    s->target_state = TARGET_ENDED;
    pthread_mutex_unlock(&s->input_lock);
    SetEvent(s->wake_event);
    return NULL;
}

BOOL gh_asset_start(gh_rdp_session *s, uint32_t width, uint32_t height) {
    freerdp *instance = freerdp_new();
    if (!instance) return FALSE;
    instance->ContextSize = sizeof(gh_client_context);
    instance->PreConnect = client_pre_connect;
    instance->PostConnect = client_post_connect;
    instance->Authenticate = client_authenticate;
    instance->VerifyCertificateEx = client_verify_certificate;
    instance->VerifyChangedCertificateEx = client_verify_changed_certificate;
    if (!freerdp_context_new(instance)) {
        freerdp_free(instance);
        return FALSE;
    }
    ((gh_client_context *)instance->context)->session = s;
    rdpSettings *settings = instance->settings;
    gh_rdp_target *t = &s->target_info;
    freerdp_settings_set_string(settings, FreeRDP_ServerHostname, t->host);
    settings->ServerPort = t->port;
    freerdp_settings_set_string(settings, FreeRDP_Username, t->username);
    freerdp_settings_set_string(settings, FreeRDP_Password, t->password);
    if (t->domain[0]) freerdp_settings_set_string(settings, FreeRDP_Domain, t->domain);
    settings->DesktopWidth = width;
    settings->DesktopHeight = height;
    settings->ColorDepth = 32;
    settings->SoftwareGdi = TRUE;
    settings->RdpSecurity = FALSE;
    settings->TlsSecurity = TRUE;
    settings->NlaSecurity = TRUE;
    settings->IgnoreCertificate = FALSE;
    settings->AutoLogonEnabled = TRUE;
    settings->SupportGraphicsPipeline = FALSE;
    settings->DesktopResize = TRUE;
    if (t->timeout_ms) settings->TcpConnectTimeout = t->timeout_ms;
    s->target = instance;
    s->target_state = TARGET_CONNECTING;
    if (pthread_create(&s->target_thread, NULL, target_thread_main, s) != 0) {
        s->target_state = TARGET_ENDED;
        return FALSE;
    }
    s->target_thread_started = 1;
    return TRUE;
}

void gh_asset_free(gh_rdp_session *s) {
    if (!s->target) return;
    freerdp_abort_connect(s->target);
    if (s->target_thread_started) pthread_join(s->target_thread, NULL);
    pthread_mutex_lock(&s->clip_lock);
    s->clip_client = NULL;
    pthread_mutex_unlock(&s->clip_lock);
    // What went to the asset: the user's input and the protocol around it.
    s->bytes_to_asset = freerdp_get_transport_sent(s->target->context, FALSE);
    freerdp_disconnect(s->target);
    gdi_free(s->target);
    freerdp_context_free(s->target);
    freerdp_free(s->target);
    s->target = NULL;
}

