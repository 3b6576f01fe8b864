import Foundation

/// The whole of a validated configuration. Paths in it are absolute: relative paths in the
/// YAML file are resolved against the directory that holds the file, so the gateway behaves
/// the same whatever directory it is started from.
public struct GatehouseConfig: Sendable {
    public var configPath: String
    public var dataDir: String
    public var listen: Listen
    public var users: [User]
    public var assets: [Asset]
    public var grants: [Grant]
    public var security: Security
    public var recording: RecordingPolicy
    public var commandRules: [CommandRule] = []
    /// How much of each command's output is kept with it.
    public var commandOutputLines = 20

    public struct Listen: Sendable {
        public var ssh: HostPort
        /// The HTTP API and live streams; nil when `listen.web` is "off".
        public var web: HostPort?
        /// The RDP gateway; nil (the default) when `listen.rdp` is absent.
        public var rdp: HostPort? = nil
    }

    /// The RDP listener's TLS identity (`rdp:` in the config), PEM files.
    public struct RDP: Sendable, Equatable {
        public var certificate: String
        public var privateKey: String
        /// Offer NLA to users, checked against one-time RDP passwords (`gatehouse rdp-password`).
        /// Clients then prefer NLA, so users log in with those rather than their own password.
        public var nla = false
        /// Clipboard text between the user and the asset, recorded; false turns the clipboard off.
        public var clipboardText = true
    }
    public var rdp: RDP?

    public struct User: Sendable, Equatable {
        public var name: String
        public var passwordHash: String?
        public var authorizedKeys: [AuthorizedKey]
        public var role: Role
    }

    public enum Role: String, Sendable, CaseIterable {
        case user, auditor, admin
    }

    public struct Asset: Sendable, Equatable {
        public var name: String
        public var host: String
        public var sshPort: Int
        /// `SHA256:...` fingerprint the asset must present; nil means trust on first use.
        public var hostKey: String?
        public var accounts: [Account]
        /// RDP port of the asset; nil when the asset takes no RDP sessions.
        public var rdpPort: Int? = nil
        /// Whether the asset takes SSH sessions: yes unless it has an `rdp_port` and no `ssh_port`.
        public var ssh = true
        /// SHA-256 fingerprint of the asset's RDP certificate (colon-separated hex, as FreeRDP
        /// prints it); nil means trust on first use.
        public var rdpCertificate: String? = nil
    }

    public struct Account: Sendable, Equatable {
        public var name: String
        public var credential: Credential
    }

    /// Where the secret for an asset account lives. Never the secret itself: config files get
    /// copied, pasted and committed.
    public enum Credential: Sendable, Equatable {
        case passwordEnv(String)
        case passwordFile(String)
        case privateKeyFile(String)

        /// The password, for protocols that need one (RDP); nil with a reason otherwise.
        public func password(environment: [String: String] = ProcessInfo.processInfo.environment) -> Result<String, CredentialError> {
            switch self {
            case .passwordEnv(let name):
                guard let value = environment[name] else { return .failure(.init(reason: "environment variable \(name) is not set")) }
                return .success(value)
            case .passwordFile(let path):
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return .failure(.init(reason: "cannot read \(path)")) }
                return .success(text.trimmingCharacters(in: .newlines))
            case .privateKeyFile:
                return .failure(.init(reason: "the account has a private key, and RDP needs a password"))
            }
        }
    }

    public struct CredentialError: Error, Sendable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    public struct Grant: Sendable, Equatable {
        public var users: [String]
        public var assets: [String]
        /// Empty means every account of the granted assets.
        public var accounts: [String]
        /// What the grant allows; all of them unless the config says otherwise.
        public var actions: Set<Action> = Set(Action.allCases)

        public init(users: [String], assets: [String], accounts: [String], actions: Set<Action> = Set(Action.allCases)) {
            self.users = users
            self.assets = assets
            self.accounts = accounts
            self.actions = actions
        }
    }

    /// What a grant allows on its accounts: log in, send files to the asset, fetch files from it.
    public enum Action: String, Sendable, CaseIterable {
        case connect, upload, download
    }

    /// Protection against password guessing: `maxFailures` failed logins for one user from one
    /// address within `window` seconds lock that pair out for `lockout` seconds.
    public struct Security: Sendable {
        public var maxFailures: Int = 5
        public var failureWindow: TimeInterval = 300
        public var lockout: TimeInterval = 300
        public var allowPortForwarding: Bool = false
        public var allowAgentForwarding: Bool = false
        public var allowX11Forwarding: Bool = false
        /// Seconds allowed to connect and log in to an asset.
        public var upstreamTimeout: TimeInterval = 10
    }
}

public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[v6]:port`.
    public init?(parsing text: String) {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A public key from an `authorized_keys` style line: `type base64 [comment]`.
public struct AuthorizedKey: Sendable, Equatable {
    public var type: String
    public var base64: String
    public var comment: String

    public init?(line: String) {
        let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count >= 2 else { return nil }
        let knownTypes = ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                          "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                          "sk-ecdsa-sha2-nistp256@openssh.com"]
        guard knownTypes.contains(String(parts[0])),
              Data(base64Encoded: String(parts[1])) != nil else { return nil }
        type = String(parts[0])
        base64 = String(parts[1])
        comment = parts.count > 2 ? String(parts[2]) : ""
    }
}
