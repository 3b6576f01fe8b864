import CLibSSH
import Foundation
import GatehouseCore

/// What the user's channel asked the asset to run.
enum ChannelProgram: Sendable, Equatable {
    case shell
    case exec(String)
    case subsystem(String)

    var label: String {
        switch self {
        case .shell: return "shell"
        case .exec(let c): return "exec: \(c)"
        case .subsystem(let s): return "subsystem: \(s)"
        }
    }
}

struct PtyRequest: Sendable, Equatable {
    var term: String
    var columns: Int
    var rows: Int
}

/// Why an asset could not be reached, worded for the user's terminal.
enum UpstreamError: Error, CustomStringConvertible {
    case unreachable(asset: String, address: String, reason: String)
    case hostKeyChanged(asset: String, expected: String, got: String)
    case accountRefused(asset: String, account: String, reason: String)
    case credentialUnavailable(asset: String, account: String, reason: String)
    case channelRefused(asset: String, reason: String)

    var description: String {
        switch self {
        case let .unreachable(asset, address, reason):
            return "asset \"\(asset)\" is unreachable (\(address)): \(reason)"
        case let .hostKeyChanged(asset, expected, got):
            return "host key of asset \"\(asset)\" has changed (expected \(expected), got \(got)); refusing to connect. An administrator must confirm the new key."
        case let .accountRefused(asset, account, reason):
            return "asset \"\(asset)\" refused the stored account \"\(account)\": \(reason)"
        case let .credentialUnavailable(asset, account, reason):
            return "the stored credential for \"\(account)@\(asset)\" is unavailable: \(reason)"
        case let .channelRefused(asset, reason):
            return "asset \"\(asset)\" refused the session: \(reason)"
        }
    }
}

/// Connects to an asset and opens the session channel. The steps are blocking libssh calls
/// bounded by a timeout, run on a worker thread; the session is switched to non-blocking
/// before it is handed to the relay, which owns it from then on.
struct UpstreamConnector {
    /// Where connectors run: blocking, bounded by their timeout, never on a session's queue.
    static let threads = WorkerThreads(name: "gatehouse-connector", count: 32)

    var target: Directory.Target
    var hostKeys: AssetHostKeys
    var timeout: TimeInterval
    var pty: PtyRequest?
    var environment: [(String, String)]
    var program: ChannelProgram

    func connect() -> Result<UpstreamLeg, UpstreamError> {
        _ = LibSSH.initialized
        let asset = target.asset
        let address = "\(asset.host):\(asset.sshPort)"
        guard let session = ssh_new() else {
            return .failure(.unreachable(asset: asset.name, address: address, reason: "out of memory"))
        }
        var handedOver = false
        defer { if !handedOver { ssh_disconnect(session); ssh_free(session) } }

        var noConfig: Int32 = 0
        ssh_options_set(session, SSH_OPTIONS_PROCESS_CONFIG, &noConfig)
        ssh_options_set(session, SSH_OPTIONS_HOST, asset.host)
        var port = UInt32(asset.sshPort)
        ssh_options_set(session, SSH_OPTIONS_PORT, &port)
        ssh_options_set(session, SSH_OPTIONS_USER, target.account.name)
        var seconds = Int(max(1, timeout))
        ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &seconds)
        var noDelay: Int32 = 1
        ssh_options_set(session, SSH_OPTIONS_NODELAY, &noDelay)
        ssh_options_set(session, SSH_OPTIONS_KNOWNHOSTS, "/dev/null")
        ssh_options_set(session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null")

        guard ssh_connect(session) == SSH_OK else {
            return .failure(.unreachable(asset: asset.name, address: address, reason: Self.plainReason(LibSSH.errorText(session))))
        }

        var key: OpaquePointer?
        guard ssh_get_server_publickey(session, &key) == SSH_OK, let key else {
            return .failure(.unreachable(asset: asset.name, address: address, reason: "no host key presented"))
        }
        let fingerprint = LibSSH.sha256Fingerprint(key) ?? "unknown"
        ssh_key_free(key)
        if case let .changed(expected) = hostKeys.check(asset: asset, fingerprint: fingerprint) {
            return .failure(.hostKeyChanged(asset: asset.name, expected: expected, got: fingerprint))
        }

        switch authenticate(session) {
        case .success: break
        case .failure(let error): return .failure(error)
        }
        let banner: String? = ssh_get_issue_banner(session).map { c in
            defer { ssh_string_free_char(c) }
            return String(cString: c)
        }

        guard let channel = ssh_channel_new(session) else {
            return .failure(.channelRefused(asset: asset.name, reason: LibSSH.errorText(session)))
        }
        guard ssh_channel_open_session(channel) == SSH_OK else {
            ssh_channel_free(channel)
            return .failure(.channelRefused(asset: asset.name, reason: LibSSH.errorText(session)))
        }
        // The leg (and its exit-status callbacks) exists before the program starts: a quick
        // command's exit status can arrive together with the reply to the exec request.
        let leg = UpstreamLeg(session: session, channel: channel, banner: banner, fingerprint: fingerprint)
        handedOver = true
        // Variables the asset does not accept are refused by it, as on a direct connection.
        for (name, value) in environment { _ = ssh_channel_request_env(channel, name, value) }
        if let pty, ssh_channel_request_pty_size(channel, pty.term, Int32(pty.columns), Int32(pty.rows)) != SSH_OK {
            let reason = LibSSH.errorText(session)
            leg.shutdown()
            return .failure(.channelRefused(asset: asset.name, reason: "no terminal: \(reason)"))
        }
        let started: Int32
        switch program {
        case .shell: started = ssh_channel_request_shell(channel)
        case .exec(let command): started = ssh_channel_request_exec(channel, command)
        case .subsystem(let name): started = ssh_channel_request_subsystem(channel, name)
        }
        guard started == SSH_OK else {
            let reason = LibSSH.errorText(session)
            leg.shutdown()
            return .failure(.channelRefused(asset: asset.name, reason: "\(program.label) refused: \(reason)"))
        }
        ssh_set_blocking(session, 0)
        return .success(leg)
    }

    private func authenticate(_ session: OpaquePointer) -> Result<Void, UpstreamError> {
        let asset = target.asset.name, account = target.account.name
        let rc: Int32
        switch target.account.credential {
        case .passwordEnv(let name):
            guard let password = ProcessInfo.processInfo.environment[name] else {
                return .failure(.credentialUnavailable(asset: asset, account: account, reason: "environment variable \(name) is not set"))
            }
            rc = ssh_userauth_password(session, nil, password)
        case .passwordFile(let path):
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                return .failure(.credentialUnavailable(asset: asset, account: account, reason: "cannot read \(path)"))
            }
            rc = ssh_userauth_password(session, nil, text.trimmingCharacters(in: .newlines))
        case .privateKeyFile(let path):
            var key: OpaquePointer?
            guard ssh_pki_import_privkey_file(path, nil, nil, nil, &key) == SSH_OK, let key else {
                return .failure(.credentialUnavailable(asset: asset, account: account, reason: "cannot load private key \(path)"))
            }
            defer { ssh_key_free(key) }
            rc = ssh_userauth_publickey(session, nil, key)
        }
        switch Int(rc) {
        case Int(SSH_AUTH_SUCCESS.rawValue): return .success(())
        case Int(SSH_AUTH_ERROR.rawValue):
            return .failure(.unreachable(asset: asset, address: "\(target.asset.host):\(target.asset.sshPort)", reason: Self.plainReason(LibSSH.errorText(session))))
        default:
            return .failure(.accountRefused(asset: asset, account: account, reason: "authentication failed"))
        }
    }

    /// libssh's messages carry internal prefixes; keep what a person can act on.
    static func plainReason(_ text: String) -> String {
        let lower = text.lowercased()
        if lower.contains("connection refused") { return "connection refused" }
        if lower.contains("timeout") || lower.contains("timed out") { return "connection timed out" }
        if lower.contains("no route") { return "no route to host" }
        if lower.contains("name or service not known") || lower.contains("failed to resolve") { return "host name not found" }
        return text
    }
}
