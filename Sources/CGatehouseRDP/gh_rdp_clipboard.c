// Clipboard relay between the user's client and the asset (MS-RDPECLIP), text only.
//
// The user's leg is a cliprdr server on the peer's virtual channel manager; the asset's is the
// cliprdr client channel. The asset drives the initialisation (its capabilities and "monitor
// ready" are passed to the user), format lists are cut down to text formats, and each text
// that crosses is handed to the session (recorded as an activity and in the recording). File
// lists, file contents and clipboard locks are refused: a bastion does not move files through
// the clipboard unless told to.
#include "gh_rdp_internal.h"

#include <string.h>

#include <freerdp/channels/cliprdr.h>
#include <freerdp/client/channels.h>
#include <freerdp/client/cmdline.h>
#include <freerdp/event.h>
#include <winpr/clipboard.h>

static BOOL is_text(UINT32 format) { return format == CF_TEXT || format == CF_OEMTEXT || format == CF_UNICODETEXT; }

/// The list with only its text formats.
static CLIPRDR_FORMAT_LIST text_only(const CLIPRDR_FORMAT_LIST *list, CLIPRDR_FORMAT *out, UINT32 capacity) {
    CLIPRDR_FORMAT_LIST filtered = *list;
    UINT32 n = 0;
    for (UINT32 i = 0; i < list->numFormats && n < capacity; i++) {
        if (is_text(list->formats[i].formatId)) {
            out[n].formatId = list->formats[i].formatId;
            out[n].formatName = NULL;
            n++;
        }
    }
    filtered.numFormats = n;
    filtered.formats = out;
    filtered.msgType = CB_FORMAT_LIST;
    filtered.msgFlags = 0;
    filtered.dataLen = 0; // recomputed by the sender
    return filtered;
}

/// Capabilities without file transfer or locking.
static UINT32 capability_flags(const CLIPRDR_CAPABILITIES *caps) {
    for (UINT32 i = 0; i < caps->cCapabilitiesSets; i++) {
        const CLIPRDR_CAPABILITY_SET *set = &caps->capabilitySets[i];
        if (set->capabilitySetType == CB_CAPSTYPE_GENERAL)
            return ((const CLIPRDR_GENERAL_CAPABILITY_SET *)set)->generalFlags & CB_USE_LONG_FORMAT_NAMES;
    }
    return 0;
}

static CLIPRDR_CAPABILITIES text_capabilities(CLIPRDR_GENERAL_CAPABILITY_SET *general, UINT32 flags) {
    memset(general, 0, sizeof(*general));
    general->capabilitySetType = CB_CAPSTYPE_GENERAL;
    general->capabilitySetLength = 12;
    general->version = CB_CAPS_VERSION_2;
    general->generalFlags = flags;
    CLIPRDR_CAPABILITIES caps = { 0 };
    caps.msgType = CB_CLIP_CAPS;
    caps.cCapabilitiesSets = 1;
    caps.capabilitySets = (CLIPRDR_CAPABILITY_SET *)general;
    return caps;
}

static const CLIPRDR_FORMAT_DATA_RESPONSE failed_response = { CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_FAIL, 0, NULL };

/// The answer to a file contents request: files do not cross the clipboard.
static CLIPRDR_FILE_CONTENTS_RESPONSE refused_file_contents(const CLIPRDR_FILE_CONTENTS_REQUEST *request) {
    CLIPRDR_FILE_CONTENTS_RESPONSE failed = { 0 };
    failed.msgType = CB_FILECONTENTS_RESPONSE;
    failed.msgFlags = CB_RESPONSE_FAIL;
    failed.streamId = request->streamId;
    return failed;
}

static void record(gh_rdp_session *s, int to_asset, UINT32 format, const CLIPRDR_FORMAT_DATA_RESPONSE *r) {
    if (r->msgFlags & CB_RESPONSE_FAIL) return;
    if (s->cb.clipboard && s->ctx && r->requestedFormatData && r->dataLen > 0)
        s->cb.clipboard(s->ctx, to_asset, format, r->requestedFormatData, r->dataLen);
}

// ---------------------------------------------------------------- from the user (server side)

#define SESSION(context) ((gh_rdp_session *)(context)->custom)

static UINT user_capabilities(CliprdrServerContext *context, const CLIPRDR_CAPABILITIES *caps) {
    gh_rdp_session *s = SESSION(context);
    CLIPRDR_GENERAL_CAPABILITY_SET general;
    CLIPRDR_CAPABILITIES ours = text_capabilities(&general, capability_flags(caps));
    UINT rc = CHANNEL_RC_OK;
    pthread_mutex_lock(&s->clip_lock);
    if (s->clip_client) rc = s->clip_client->ClientCapabilities(s->clip_client, &ours);
    pthread_mutex_unlock(&s->clip_lock);
    return rc;
}

static UINT user_format_list(CliprdrServerContext *context, const CLIPRDR_FORMAT_LIST *list) {
    gh_rdp_session *s = SESSION(context);
    CLIPRDR_FORMAT formats[8];
    CLIPRDR_FORMAT_LIST text = text_only(list, formats, 8);
    UINT rc = CHANNEL_RC_OK;
    pthread_mutex_lock(&s->clip_lock);
    if (s->clip_client) rc = s->clip_client->ClientFormatList(s->clip_client, &text);
    pthread_mutex_unlock(&s->clip_lock);
    return rc;
}

static UINT user_format_list_response(CliprdrServerContext *context, const CLIPRDR_FORMAT_LIST_RESPONSE *r) {
    gh_rdp_session *s = SESSION(context);
    UINT rc = CHANNEL_RC_OK;
    pthread_mutex_lock(&s->clip_lock);
    if (s->clip_client) rc = s->clip_client->ClientFormatListResponse(s->clip_client, r);
    pthread_mutex_unlock(&s->clip_lock);
    return rc;
}

/// The user pastes: their client asks for the asset's clipboard.
static UINT user_data_request(CliprdrServerContext *context, const CLIPRDR_FORMAT_DATA_REQUEST *request) {
    gh_rdp_session *s = SESSION(context);
    UINT rc = CHANNEL_RC_OK;
    pthread_mutex_lock(&s->clip_lock);
    if (s->clip_client && is_text(request->requestedFormatId)) {
        s->clip_download_format = request->requestedFormatId;
        rc = s->clip_client->ClientFormatDataRequest(s->clip_client, request);
        pthread_mutex_unlock(&s->clip_lock);
        return rc;
    }
    pthread_mutex_unlock(&s->clip_lock);
    return context->ServerFormatDataResponse(context, &failed_response);
}

/// The user's clipboard, for the asset's paste: recorded as an upload.
static UINT user_data_response(CliprdrServerContext *context, const CLIPRDR_FORMAT_DATA_RESPONSE *response) {
    gh_rdp_session *s = SESSION(context);
    UINT rc = CHANNEL_RC_OK;
    pthread_mutex_lock(&s->clip_lock);
    UINT32 format = s->clip_upload_format;
    s->clip_upload_format = 0;
    if (s->clip_client) {
        if (is_text(format)) {
            record(s, 1, format, response);
            rc = s->clip_client->ClientFormatDataResponse(s->clip_client, response);
        } else {
            rc = s->clip_client->ClientFormatDataResponse(s->clip_client, &failed_response);
        }
    }
    pthread_mutex_unlock(&s->clip_lock);
    return rc;
}

static UINT user_refused_file_contents(CliprdrServerContext *context, const CLIPRDR_FILE_CONTENTS_REQUEST *r) {
    CLIPRDR_FILE_CONTENTS_RESPONSE failed = refused_file_contents(r);
    return context->ServerFileContentsResponse(context, &failed);
}

static UINT user_ignored(CliprdrServerContext *context, const void *pdu) {
    (void)context; (void)pdu;
    return CHANNEL_RC_OK;
}

// ---------------------------------------------------------------- from the asset (client side)

static UINT asset_capabilities(CliprdrClientContext *context, const CLIPRDR_CAPABILITIES *caps) {
    gh_rdp_session *s = SESSION(context);
    CLIPRDR_GENERAL_CAPABILITY_SET general;
    CLIPRDR_CAPABILITIES ours = text_capabilities(&general, capability_flags(caps));
    return s->clip_server ? s->clip_server->ServerCapabilities(s->clip_server, &ours) : CHANNEL_RC_OK;
}

static UINT asset_monitor_ready(CliprdrClientContext *context, const CLIPRDR_MONITOR_READY *ready) {
    gh_rdp_session *s = SESSION(context);
    if (s->clip_server) return s->clip_server->MonitorReady(s->clip_server, ready);
    // No clipboard on the user's side: answer the asset as a client without one would.
    CLIPRDR_GENERAL_CAPABILITY_SET general;
    CLIPRDR_CAPABILITIES caps = text_capabilities(&general, 0);
    context->ClientCapabilities(context, &caps);
    CLIPRDR_FORMAT_LIST empty = { 0 };
    empty.msgType = CB_FORMAT_LIST;
    return context->ClientFormatList(context, &empty);
}

static UINT asset_format_list(CliprdrClientContext *context, const CLIPRDR_FORMAT_LIST *list) {
    gh_rdp_session *s = SESSION(context);
    CLIPRDR_FORMAT formats[8];
    CLIPRDR_FORMAT_LIST text = text_only(list, formats, 8);
    if (s->clip_server) return s->clip_server->ServerFormatList(s->clip_server, &text);
    CLIPRDR_FORMAT_LIST_RESPONSE ok = { CB_FORMAT_LIST_RESPONSE, CB_RESPONSE_OK, 0 };
    return context->ClientFormatListResponse(context, &ok);
}

static UINT asset_format_list_response(CliprdrClientContext *context, const CLIPRDR_FORMAT_LIST_RESPONSE *r) {
    gh_rdp_session *s = SESSION(context);
    return s->clip_server ? s->clip_server->ServerFormatListResponse(s->clip_server, r) : CHANNEL_RC_OK;
}

/// The asset pastes: it asks for the user's clipboard.
static UINT asset_data_request(CliprdrClientContext *context, const CLIPRDR_FORMAT_DATA_REQUEST *request) {
    gh_rdp_session *s = SESSION(context);
    if (s->clip_server && is_text(request->requestedFormatId)) {
        pthread_mutex_lock(&s->clip_lock);
        s->clip_upload_format = request->requestedFormatId;
        pthread_mutex_unlock(&s->clip_lock);
        return s->clip_server->ServerFormatDataRequest(s->clip_server, request);
    }
    return context->ClientFormatDataResponse(context, &failed_response);
}

/// The asset's clipboard, for the user's paste: recorded as a download.
static UINT asset_data_response(CliprdrClientContext *context, const CLIPRDR_FORMAT_DATA_RESPONSE *response) {
    gh_rdp_session *s = SESSION(context);
    if (!s->clip_server) return CHANNEL_RC_OK;
    pthread_mutex_lock(&s->clip_lock);
    UINT32 format = s->clip_download_format;
    s->clip_download_format = 0;
    pthread_mutex_unlock(&s->clip_lock);
    if (!is_text(format)) return s->clip_server->ServerFormatDataResponse(s->clip_server, &failed_response);
    record(s, 0, format, response);
    return s->clip_server->ServerFormatDataResponse(s->clip_server, response);
}

static UINT asset_refused_file_contents(CliprdrClientContext *context, const CLIPRDR_FILE_CONTENTS_REQUEST *r) {
    CLIPRDR_FILE_CONTENTS_RESPONSE failed = refused_file_contents(r);
    return context->ClientFileContentsResponse(context, &failed);
}

static UINT asset_ignored(CliprdrClientContext *context, const void *pdu) {
    (void)context; (void)pdu;
    return CHANNEL_RC_OK;
}

// ---------------------------------------------------------------- set-up

static void on_channel_connected(void *context, ChannelConnectedEventArgs *e) {
    gh_rdp_session *s = ((gh_client_context *)context)->session;
    if (strcmp(e->name, CLIPRDR_SVC_CHANNEL_NAME) != 0) return;
    CliprdrClientContext *clip = e->pInterface;
    clip->custom = s;
    clip->ServerCapabilities = asset_capabilities;
    clip->MonitorReady = asset_monitor_ready;
    clip->ServerFormatList = asset_format_list;
    clip->ServerFormatListResponse = asset_format_list_response;
    clip->ServerFormatDataRequest = asset_data_request;
    clip->ServerFormatDataResponse = asset_data_response;
    clip->ServerFileContentsRequest = asset_refused_file_contents;
    clip->ServerLockClipboardData = (pcCliprdrServerLockClipboardData)asset_ignored;
    clip->ServerUnlockClipboardData = (pcCliprdrServerUnlockClipboardData)asset_ignored;
    pthread_mutex_lock(&s->clip_lock);
    s->clip_client = clip;
    pthread_mutex_unlock(&s->clip_lock);
}

static void on_channel_disconnected(void *context, ChannelDisconnectedEventArgs *e) {
    gh_rdp_session *s = ((gh_client_context *)context)->session;
    if (strcmp(e->name, CLIPRDR_SVC_CHANNEL_NAME) != 0) return;
    pthread_mutex_lock(&s->clip_lock);
    s->clip_client = NULL;
    pthread_mutex_unlock(&s->clip_lock);
}

/// In the asset leg's PreConnect: load the cliprdr channel and watch for it.
void gh_clip_client_prepare(gh_rdp_session *s, freerdp *instance) {
    (void)s;
    PubSub_SubscribeChannelConnected(instance->context->pubSub, on_channel_connected);
    PubSub_SubscribeChannelDisconnected(instance->context->pubSub, on_channel_disconnected);
    instance->settings->RedirectClipboard = TRUE;
    instance->settings->DeviceRedirection = FALSE;
    instance->settings->AudioPlayback = FALSE;
    instance->settings->AudioCapture = FALSE;
    freerdp_client_load_addins(instance->context->channels, instance->settings);
}

/// On the user's thread after logon, when the user's client joined the cliprdr channel.
void gh_clip_server_start(gh_rdp_session *s) {
    if (!s->vcm || !WTSVirtualChannelManagerIsChannelJoined(s->vcm, CLIPRDR_SVC_CHANNEL_NAME)) return;
    CliprdrServerContext *clip = cliprdr_server_context_new(s->vcm);
    if (!clip) return;
    clip->custom = s;
    clip->rdpcontext = s->peer->context;
    clip->useLongFormatNames = TRUE;
    clip->streamFileClipEnabled = FALSE;
    clip->fileClipNoFilePaths = TRUE;
    clip->canLockClipData = FALSE;
    clip->autoInitializationSequence = FALSE; // the asset's capabilities and "ready" are relayed
    clip->ClientCapabilities = user_capabilities;
    clip->ClientFormatList = user_format_list;
    clip->ClientFormatListResponse = user_format_list_response;
    clip->ClientFormatDataRequest = user_data_request;
    clip->ClientFormatDataResponse = user_data_response;
    clip->ClientFileContentsRequest = user_refused_file_contents;
    clip->ClientLockClipboardData = (psCliprdrClientLockClipboardData)user_ignored;
    clip->ClientUnlockClipboardData = (psCliprdrClientUnlockClipboardData)user_ignored;
    clip->TempDirectory = (psCliprdrTempDirectory)user_ignored;
    if (clip->Start(clip) != CHANNEL_RC_OK) {
        cliprdr_server_context_free(clip);
        return;
    }
    s->clip_server = clip;
}

void gh_clip_server_stop(gh_rdp_session *s) {
    if (!s->clip_server) return;
    s->clip_server->Stop(s->clip_server);
    cliprdr_server_context_free(s->clip_server);
    s->clip_server = NULL;
}
