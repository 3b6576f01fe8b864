// The RDP gateway's C layer: every FreeRDP call Gatehouse makes is behind this header.
//
// Gatehouse terminates RDP on both legs: it is an RDP server to the user's client (a
// freerdp_peer) and an RDP client to the asset (a freerdp instance with the software GDI).
// The asset's screen is decoded into one framebuffer; the user is sent that framebuffer
// (planar or interleaved bitmap updates) and the recorder is handed its changed rectangles.
// What the user sees is therefore exactly what is recorded (docs/decisions/0010).
//
// Threads: one per user connection (the peer loop, which also encodes for the user and
// hands frames to the recorder) and one per asset connection, as FreeRDP expects; each
// waits on FreeRDP's event handles and on an abort event owned here.
#ifndef GH_RDP_H
#define GH_RDP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gh_rdp_server gh_rdp_server;
typedef struct gh_rdp_session gh_rdp_session;

typedef struct gh_rdp_rect {
    int32_t x, y, width, height;
} gh_rdp_rect;

/// What the user's client sent. Strings are UTF-8 and valid during the callback only.
typedef struct gh_rdp_logon {
    const char *username;
    const char *domain;
    const char *password;
    /// "web01" from a routing token "Cookie: msts=web01" (xfreerdp /load-balance-info), or NULL.
    const char *routing_token;
    const char *client_address;
    const char *client_hostname;
    uint32_t client_build;
    uint32_t width, height, color_depth;
    /// 1 when the credentials came through NLA (the password is then a one-time RDP password
    /// the callee already vouched for in nla_hash).
    int nla;
} gh_rdp_logon;

/// Where to connect, filled by the logon callback.
typedef struct gh_rdp_target {
    char host[256];
    uint16_t port;
    char username[256];
    char domain[256];
    char password[512];
    uint32_t timeout_ms;
} gh_rdp_target;

/// Disconnect reasons shown by the user's client (MS-RDPBCGR error info codes).
enum {
    GH_RDP_REASON_ADMIN = 0x01,      // "disconnected by an administrative tool"
    GH_RDP_REASON_DENIED = 0x07,     // the server denied the connection
    GH_RDP_REASON_PRIVILEGES = 0x09, // insufficient access privileges (refused logon, no grant)
    GH_RDP_REASON_LOGOFF = 0x0C,     // logged off
};

typedef struct gh_rdp_callbacks {
    void *server_context;
    /// Authenticates the user and picks the asset. Returns a session context to go on (and
    /// fills `target`), or NULL to refuse: `reason` gets a line for the log and `*code` the
    /// disconnect reason for the client. Called on the peer thread.
    void *(*logon)(void *server_context, gh_rdp_session *session, const gh_rdp_logon *logon,
                   gh_rdp_target *target, char *reason, size_t reason_size, uint32_t *code);
    /// The asset's certificate: 1 trusts it (pinned on first use by the callee), 0 refuses.
    int (*verify_certificate)(void *session_context, const char *host, uint16_t port,
                              const char *fingerprint);
    /// Both legs are up; the desktop is width x height.
    void (*connected)(void *session_context, uint32_t width, uint32_t height);
    /// The desktop changed size (the asset resized it).
    void (*resized)(void *session_context, uint32_t width, uint32_t height);
    /// Changed rectangles of the framebuffer (BGRX, `stride` bytes a row), at most about 12
    /// times a second, on the peer thread; the pixels are only valid during the call.
    /// Returning 0 ends the session (the recording failed: no session runs unrecorded).
    int (*frame)(void *session_context, const uint8_t *bgrx, uint32_t stride, uint32_t width,
                 uint32_t height, const gh_rdp_rect *rects, size_t count);
    /// The user's mouse position (throttled like frames).
    void (*pointer)(void *session_context, uint16_t x, uint16_t y);
    /// NLA on the user leg: fills the NT hash (MD4 of the UTF-16 password) of the one-time
    /// RDP password issued to `user` (as typed, e.g. "alice#web01") and returns 1, or returns
    /// 0 when there is none. Called on the peer thread during CredSSP. May be NULL (no NLA).
    int (*nla_hash)(void *server_context, const char *user, uint8_t nt_hash[16]);
    /// Clipboard text crossed: `to_asset` 1 when the user's text was pasted on the asset, 0
    /// for the asset's text pasted by the user. `format` is CF_UNICODETEXT (13, UTF-16LE),
    /// CF_TEXT (1) or CF_OEMTEXT (7); the data is what was sent, NUL included. Channel thread.
    void (*clipboard)(void *session_context, int to_asset, uint32_t format, const uint8_t *data, size_t length);
    /// The session is over, both legs closed. After this returns the session context is
    /// not used again; `gh_rdp_session_release` the session when done with it.
    /// `bytes_to_user`: what the user's client was sent; `bytes_to_asset`: what the asset
    /// was sent (the user's input and the protocol around it).
    void (*closed)(void *session_context, const char *reason, uint64_t bytes_to_user,
                   uint64_t bytes_to_asset);
} gh_rdp_callbacks;

typedef struct gh_rdp_server_options {
    const char *host; // NULL: all addresses
    uint16_t port;
    const char *certificate_file; // PEM, absolute path
    const char *private_key_file; // PEM RSA key, absolute path
    int nla;                      // offer NLA (one-time RDP passwords) besides TLS
    int clipboard;                // relay clipboard text (recorded); 0: no clipboard
} gh_rdp_server_options;

/// Hands memory freed by ended sessions back to the system (glibc keeps it per thread arena).
void gh_rdp_return_free_memory(void);

/// The NT hash of a password (for storing one-time RDP passwords). 1 on success.
int gh_rdp_nt_hash(const char *password, uint8_t nt_hash[16]);

/// Opens the listener and starts accepting. NULL on failure, with `error` filled.
gh_rdp_server *gh_rdp_server_start(const gh_rdp_server_options *options,
                                   const gh_rdp_callbacks *callbacks, char *error,
                                   size_t error_size);
/// Stops accepting (sessions already running go on until terminated).
void gh_rdp_server_stop(gh_rdp_server *server);

/// Ends a session from any thread: the user's client is told `code`, both legs close, and
/// the closed callback follows. Harmless after the session ended.
void gh_rdp_session_terminate(gh_rdp_session *session, uint32_t code);
/// The logon callback's caller holds a reference for the closed callback; a context that
/// keeps the session pointer past `closed` retains it and releases it when done.
void gh_rdp_session_retain(gh_rdp_session *session);
void gh_rdp_session_release(gh_rdp_session *session);

#ifdef __cplusplus
}
#endif
#endif
