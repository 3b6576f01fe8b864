import CLibSSH
import Foundation

/// Small, safe helpers over libssh that every wrapper needs. Nothing above this folder and
/// the wrappers beside it sees an `OpaquePointer`.
enum LibSSH {
    /// `ssh_init` must run once before any session exists, and before threads race to it.
    static let initialized: Bool = {
        let ok = ssh_init() == 0
        // GATEHOUSE_LIBSSH_LOG=1..4 turns on libssh's own tracing (to stderr), for debugging.
        if let level = ProcessInfo.processInfo.environment["GATEHOUSE_LIBSSH_LOG"].flatMap(Int32.init) {
            ssh_set_log_level(level)
        }
        return ok
    }()

    static func errorText(_ session: OpaquePointer?) -> String {
        guard let session, let c = ssh_get_error(UnsafeMutableRawPointer(session)) else { return "unknown error" }
        let s = String(cString: c)
        return s.isEmpty ? "unknown error" : s
    }

    /// `SHA256:base64` fingerprint of a key, as `ssh-keygen -l` prints it.
    static func sha256Fingerprint(_ key: OpaquePointer) -> String? {
        var hash: UnsafeMutablePointer<UInt8>?
        var length = 0
        guard ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &length) == 0, let bytes = hash else { return nil }
        defer { ssh_clean_pubkey_hash(&hash) }
        guard let c = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, bytes, length) else { return nil }
        defer { ssh_string_free_char(c) }
        return String(cString: c)
    }

    /// Base64 of a public key blob, the middle field of an authorized_keys line.
    static func publicKeyBase64(_ key: OpaquePointer) -> String? {
        var b64: UnsafeMutablePointer<CChar>?
        guard ssh_pki_export_pubkey_base64(key, &b64) == 0, let b64 else { return nil }
        defer { ssh_string_free_char(b64) }
        return String(cString: b64)
    }

    /// Loads the private key at `path`, generating it first when it does not exist yet.
    static func ensureHostKey(path: String, type: ssh_keytypes_e, bits: Int32) throws {
        if FileManager.default.fileExists(atPath: path) { return }
        var key: OpaquePointer?
        guard ssh_pki_generate(type, bits, &key) == 0, let key else {
            throw GatewayError.setup("cannot generate host key \(path)")
        }
        defer { ssh_key_free(key) }
        let oldMask = umask(0o077)
        defer { umask(oldMask) }
        guard ssh_pki_export_privkey_file(key, nil, nil, nil, path) == 0 else {
            throw GatewayError.setup("cannot write host key \(path)")
        }
    }
}

public enum GatewayError: Error, CustomStringConvertible {
    case setup(String)
    public var description: String {
        switch self {
        case .setup(let s): return s
        }
    }
}
