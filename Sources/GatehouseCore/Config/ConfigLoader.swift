import Foundation
import Yams

/// One problem found in a configuration file, with where it is.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible, Error {
    public var file: String
    public var line: Int?
    public var column: Int?
    /// Dotted path of the offending key, e.g. `users[1].password_hash`.
    public var path: String
    public var message: String

    public var description: String {
        var location = file
        if let line { location += ":\(line)" }
        if let column { location += ":\(column)" }
        return path.isEmpty ? "\(location): \(message)" : "\(location): \(path): \(message)"
    }
}

public struct ConfigError: Error, CustomStringConvertible {
    public var problems: [ConfigProblem]
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Reads the YAML configuration and checks it completely, collecting every problem rather
/// than stopping at the first, so one run of `check-config` shows everything to fix.
public struct ConfigLoader {
    /// Where `*_env` keys are looked up; the process environment unless a test says otherwise.
    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    public func load(path: String) throws(ConfigError) -> GatehouseConfig {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let text: String
        do {
            text = try String(contentsOfFile: absolute, encoding: .utf8)
        } catch {
            throw ConfigError(problems: [ConfigProblem(file: path, path: "", message: "cannot read the file: \(error.localizedDescription)")])
        }
        return try parse(yaml: text, path: absolute, displayPath: path)
    }

    public func parse(yaml: String, path: String, displayPath: String? = nil) throws(ConfigError) -> GatehouseConfig {
        var reader = Reader(file: displayPath ?? path, baseDir: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                            environment: environment)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            reader.problem(nil, "", "not valid YAML: \(error)")
            throw ConfigError(problems: reader.problems)
        } catch {
            reader.problem(nil, "", "not valid YAML: \(error)")
            throw ConfigError(problems: reader.problems)
        }
        guard let root, case .mapping = root else {
            reader.problem(root, "", "the file must be a mapping with data_dir, listen, users, assets and grants")
            throw ConfigError(problems: reader.problems)
        }
        let config = reader.readRoot(root, configPath: path)
        if !reader.problems.isEmpty { throw ConfigError(problems: reader.problems) }
        return config!
    }
}

private struct Reader {
    let file: String
    let baseDir: String
    let environment: [String: String]
    var problems: [ConfigProblem] = []

    init(file: String, baseDir: String, environment: [String: String]) {
        self.file = file
        self.baseDir = baseDir
        self.environment = environment
    }

    mutating func problem(_ node: Node?, _ path: String, _ message: String) {
        problems.append(ConfigProblem(file: file, line: node?.mark?.line, column: node?.mark?.column, path: path, message: message))
    }

    func resolve(_ p: String) -> String {
        p.hasPrefix("/") ? p : URL(fileURLWithPath: baseDir).appendingPathComponent(p).standardizedFileURL.path
    }

    /// Keys of a mapping, flagging the ones nobody reads (usually typos).
    mutating func fields(_ node: Node, _ path: String, known: Set<String>) -> [String: Node] {
        guard case let .mapping(mapping) = node else {
            problem(node, path, "expected a mapping")
            return [:]
        }
        var result: [String: Node] = [:]
        for (key, value) in mapping {
            guard let name = key.string else { problem(key, path, "keys must be strings"); continue }
            let child = path.isEmpty ? name : "\(path).\(name)"
            if !known.contains(name) {
                problem(key, child, "unknown key (expected one of: \(known.sorted().joined(separator: ", ")))")
                continue
            }
            if result[name] != nil { problem(key, child, "duplicate key") }
            result[name] = value
        }
        return result
    }

    mutating func string(_ node: Node?, _ path: String, required: Bool = true) -> String? {
        guard let node else {
            if required { problem(nil, path, "missing (required)") }
            return nil
        }
        guard case let .scalar(scalar) = node, !scalar.string.isEmpty else {
            problem(node, path, "expected a non-empty string")
            return nil
        }
        return scalar.string
    }

    mutating func int(_ node: Node?, _ path: String, range: ClosedRange<Int>) -> Int? {
        guard let node else { return nil }
        guard let value = node.int, range.contains(value) else {
            problem(node, path, "expected a whole number in \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return value
    }

    mutating func bool(_ node: Node?, _ path: String) -> Bool? {
        guard let node else { return nil }
        guard let value = node.bool else { problem(node, path, "expected true or false"); return nil }
        return value
    }

    mutating func strings(_ node: Node?, _ path: String) -> [String] {
        guard let node else { return [] }
        guard case let .sequence(seq) = node else {
            problem(node, path, "expected a list of strings")
            return []
        }
        var out: [String] = []
        for (i, item) in seq.enumerated() {
            if let s = string(item, "\(path)[\(i)]") { out.append(s) }
        }
        return out
    }

    mutating func list(_ node: Node?, _ path: String) -> [(Int, Node)] {
        guard let node else { return [] }
        guard case let .sequence(seq) = node else {
            problem(node, path, "expected a list")
            return []
        }
        return Array(seq.enumerated())
    }

    mutating func readRoot(_ root: Node, configPath: String) -> GatehouseConfig? {
        let f = fields(root, "", known: ["data_dir", "listen", "users", "assets", "grants", "security", "recording", "command_rules", "commands", "rdp"])
        let dataDir = string(f["data_dir"], "data_dir", required: false).map(resolve) ?? resolve("var")

        var listenSSH = HostPort(host: "0.0.0.0", port: 2222)
        // The API is for auditors and admins: loopback unless the config says otherwise.
        var listenWeb: HostPort? = HostPort(host: "127.0.0.1", port: 8080)
        var listenRDP: HostPort?
        if let listen = f["listen"] {
            let l = fields(listen, "listen", known: ["ssh", "web", "rdp"])
            if let text = string(l["ssh"], "listen.ssh", required: false) {
                if let hp = HostPort(parsing: text) { listenSSH = hp } else {
                    problem(l["ssh"], "listen.ssh", "expected host:port, e.g. \"0.0.0.0:2222\"")
                }
            }
            if let text = string(l["web"], "listen.web", required: false) {
                if text == "off" { listenWeb = nil } else if let hp = HostPort(parsing: text) { listenWeb = hp } else {
                    problem(l["web"], "listen.web", "expected host:port (e.g. \"127.0.0.1:8080\") or \"off\"")
                }
            }
            if let text = string(l["rdp"], "listen.rdp", required: false) {
                if let hp = HostPort(parsing: text) { listenRDP = hp } else {
                    problem(l["rdp"], "listen.rdp", "expected host:port, e.g. \"0.0.0.0:3389\"")
                }
            }
        }
        var rdp: GatehouseConfig.RDP?
        if let node = f["rdp"] {
            let r = fields(node, "rdp", known: ["certificate", "private_key", "nla", "clipboard"])
            if let cert = string(r["certificate"], "rdp.certificate"), let key = string(r["private_key"], "rdp.private_key") {
                rdp = .init(certificate: resolve(cert), privateKey: resolve(key))
                if let nla = bool(r["nla"], "rdp.nla") { rdp?.nla = nla }
                switch string(r["clipboard"], "rdp.clipboard", required: false) {
                case nil, "text": break
                case "off": rdp?.clipboardText = false
                case let other?: problem(r["clipboard"], "rdp.clipboard", "\"\(other)\": expected \"text\" (the default) or \"off\"")
                }
            }
        }
        if listenRDP != nil && rdp == nil {
            problem(f["listen"], "rdp", "listen.rdp needs rdp.certificate and rdp.private_key (PEM files; scripts/make-rdp-cert makes a development pair)")
        }

        var users: [GatehouseConfig.User] = []
        var userNames: Set<String> = []
        for (i, node) in list(f["users"], "users") {
            let p = "users[\(i)]"
            let u = fields(node, p, known: ["name", "password_hash", "password_hash_env", "authorized_keys", "role"])
            guard let name = string(u["name"], "\(p).name") else { continue }
            if !LoginName.isValidName(name) {
                problem(u["name"], "\(p).name", "\"\(name)\" may hold only letters, digits, '.', '_' and '-'")
            }
            if !userNames.insert(name).inserted { problem(u["name"], "\(p).name", "user \"\(name)\" is defined twice") }
            var hash: String?
            if let h = string(u["password_hash"], "\(p).password_hash", required: false) {
                if PasswordHasher.isHash(h) { hash = h } else {
                    problem(u["password_hash"], "\(p).password_hash", "not an argon2id hash; make one with `gatehouse hash-password` (plaintext passwords are not accepted)")
                }
            }
            if let envName = string(u["password_hash_env"], "\(p).password_hash_env", required: false) {
                if u["password_hash"] != nil {
                    problem(u["password_hash_env"], "\(p).password_hash_env", "give password_hash or password_hash_env, not both")
                } else if let h = environment[envName], !h.isEmpty {
                    if PasswordHasher.isHash(h) { hash = h } else {
                        problem(u["password_hash_env"], "\(p).password_hash_env", "environment variable \(envName) does not hold an argon2id hash")
                    }
                } else {
                    problem(u["password_hash_env"], "\(p).password_hash_env", "environment variable \(envName) is not set")
                }
            }
            var keys: [AuthorizedKey] = []
            if let keyList = u["authorized_keys"], case let .sequence(seq) = keyList {
                for (k, keyNode) in seq.enumerated() {
                    guard let line = string(keyNode, "\(p).authorized_keys[\(k)]") else { continue }
                    if let key = AuthorizedKey(line: line) { keys.append(key) } else {
                        problem(keyNode, "\(p).authorized_keys[\(k)]", "not a public key line (\"ssh-ed25519 AAAA... comment\")")
                    }
                }
            } else if let keyList = u["authorized_keys"] {
                problem(keyList, "\(p).authorized_keys", "expected a list of public key lines")
            }
            var role = GatehouseConfig.Role.user
            if let r = string(u["role"], "\(p).role", required: false) {
                if let parsed = GatehouseConfig.Role(rawValue: r) { role = parsed } else {
                    problem(u["role"], "\(p).role", "expected one of: user, auditor, admin")
                }
            }
            if u["password_hash"] == nil && u["password_hash_env"] == nil && u["authorized_keys"] == nil {
                problem(node, p, "user \"\(name)\" has neither password_hash nor authorized_keys and could never log in")
            }
            users.append(.init(name: name, passwordHash: hash, authorizedKeys: keys, role: role))
        }

        var assets: [GatehouseConfig.Asset] = []
        var assetNames: Set<String> = []
        for (i, node) in list(f["assets"], "assets") {
            let p = "assets[\(i)]"
            let a = fields(node, p, known: ["name", "host", "ssh_port", "host_key", "accounts", "rdp_port", "rdp_certificate"])
            guard let name = string(a["name"], "\(p).name") else { continue }
            if !LoginName.isValidName(name) {
                problem(a["name"], "\(p).name", "\"\(name)\" may hold only letters, digits, '.', '_' and '-'")
            }
            if !assetNames.insert(name).inserted { problem(a["name"], "\(p).name", "asset \"\(name)\" is defined twice") }
            let host = string(a["host"], "\(p).host") ?? ""
            let port = int(a["ssh_port"], "\(p).ssh_port", range: 1...65535) ?? 22
            var pin: String?
            if let key = string(a["host_key"], "\(p).host_key", required: false) {
                if key.hasPrefix("SHA256:") && key.count > 10 { pin = key } else {
                    problem(a["host_key"], "\(p).host_key", "expected a fingerprint like \"SHA256:...\" (ssh-keygen -lf KEY.pub)")
                }
            }
            let rdpPort = int(a["rdp_port"], "\(p).rdp_port", range: 1...65535)
            var rdpPin: String?
            if let pin = string(a["rdp_certificate"], "\(p).rdp_certificate", required: false) {
                let hex = pin.lowercased().filter { $0 != ":" }
                if hex.count == 64 && hex.allSatisfy(\.isHexDigit) { rdpPin = pin.lowercased() } else {
                    problem(a["rdp_certificate"], "\(p).rdp_certificate", "expected the certificate's SHA-256 fingerprint, 32 hex bytes separated by colons")
                }
            }
            var accounts: [GatehouseConfig.Account] = []
            var accountNames: Set<String> = []
            for (j, accNode) in list(a["accounts"], "\(p).accounts") {
                let ap = "\(p).accounts[\(j)]"
                let acc = fields(accNode, ap, known: ["name", "password_env", "password_file", "private_key_file", "password"])
                guard let accName = string(acc["name"], "\(ap).name") else { continue }
                if !accountNames.insert(accName).inserted { problem(acc["name"], "\(ap).name", "account \"\(accName)\" is defined twice") }
                if let plain = acc["password"] {
                    problem(plain, "\(ap).password", "plaintext passwords are not accepted; use password_env, password_file or private_key_file")
                }
                let sources = ["password_env", "password_file", "private_key_file"].filter { acc[$0] != nil }
                guard sources.count == 1 else {
                    problem(accNode, ap, "give exactly one of password_env, password_file, private_key_file")
                    continue
                }
                let key = sources[0]
                guard let value = string(acc[key], "\(ap).\(key)") else { continue }
                let credential: GatehouseConfig.Credential
                switch key {
                case "password_env": credential = .passwordEnv(value)
                case "password_file": credential = .passwordFile(resolve(value))
                default: credential = .privateKeyFile(resolve(value))
                }
                accounts.append(.init(name: accName, credential: credential))
            }
            if a["accounts"] == nil { problem(node, p, "asset \"\(name)\" has no accounts") }
            var asset = GatehouseConfig.Asset(name: name, host: host, sshPort: port, hostKey: pin, accounts: accounts)
            asset.rdpPort = rdpPort
            asset.ssh = a["ssh_port"] != nil || rdpPort == nil
            asset.rdpCertificate = rdpPin
            assets.append(asset)
        }

        var grants: [GatehouseConfig.Grant] = []
        for (i, node) in list(f["grants"], "grants") {
            let p = "grants[\(i)]"
            let g = fields(node, p, known: ["users", "assets", "accounts", "actions"])
            let gUsers = strings(g["users"], "\(p).users")
            let gAssets = strings(g["assets"], "\(p).assets")
            let gAccounts = strings(g["accounts"], "\(p).accounts")
            if g["users"] == nil { problem(node, "\(p).users", "missing (required)") }
            if g["assets"] == nil { problem(node, "\(p).assets", "missing (required)") }
            for (k, u) in gUsers.enumerated() where u != "*" && !userNames.contains(u) {
                problem(g["users"]?.array()[k], "\(p).users[\(k)]", "no user named \"\(u)\"")
            }
            for (k, a) in gAssets.enumerated() where a != "*" && !assetNames.contains(a) {
                problem(g["assets"]?.array()[k], "\(p).assets[\(k)]", "no asset named \"\(a)\"")
            }
            let allAccounts = Set(assets.filter { gAssets.contains("*") || gAssets.contains($0.name) }.flatMap { $0.accounts.map(\.name) })
            for (k, a) in gAccounts.enumerated() where a != "*" && !allAccounts.contains(a) {
                problem(g["accounts"]?.array()[k], "\(p).accounts[\(k)]", "no granted asset has an account named \"\(a)\"")
            }
            var actions = Set(GatehouseConfig.Action.allCases)
            if g["actions"] != nil {
                actions = []
                for (k, name) in strings(g["actions"], "\(p).actions").enumerated() {
                    if let action = GatehouseConfig.Action(rawValue: name) { actions.insert(action) } else {
                        problem(g["actions"]?.array()[k], "\(p).actions[\(k)]",
                                "unknown action \"\(name)\" (known: \(GatehouseConfig.Action.allCases.map(\.rawValue).joined(separator: ", ")))")
                    }
                }
                if !actions.contains(.connect) { problem(g["actions"], "\(p).actions", "must include connect (a grant without it allows nothing)") }
            }
            grants.append(.init(users: gUsers, assets: gAssets, accounts: gAccounts.contains("*") ? [] : gAccounts, actions: actions))
        }

        var security = GatehouseConfig.Security()
        if let sec = f["security"] {
            let s = fields(sec, "security", known: ["max_login_failures", "failure_window_seconds", "lockout_seconds",
                                                    "allow_port_forwarding", "allow_agent_forwarding", "allow_x11_forwarding",
                                                    "upstream_timeout_seconds"])
            if let v = int(s["max_login_failures"], "security.max_login_failures", range: 1...1000) { security.maxFailures = v }
            if let v = int(s["failure_window_seconds"], "security.failure_window_seconds", range: 1...86400) { security.failureWindow = TimeInterval(v) }
            if let v = int(s["lockout_seconds"], "security.lockout_seconds", range: 1...86400) { security.lockout = TimeInterval(v) }
            if let v = int(s["upstream_timeout_seconds"], "security.upstream_timeout_seconds", range: 1...300) { security.upstreamTimeout = TimeInterval(v) }
            for (key, path) in [("allow_port_forwarding", \GatehouseConfig.Security.allowPortForwarding),
                                ("allow_agent_forwarding", \.allowAgentForwarding),
                                ("allow_x11_forwarding", \.allowX11Forwarding)] {
                if let v = bool(s[key], "security.\(key)") {
                    if v { problem(s[key], "security.\(key)", "not supported yet: forwarded traffic would bypass the recorder") }
                    security[keyPath: path] = false
                }
            }
        }

        var recording = RecordingPolicy()
        if let rec = f["recording"] {
            let r = fields(rec, "recording", known: ["enabled", "flush_interval_seconds", "record_input", "on_failure", "retention_days"])
            if let v = bool(r["enabled"], "recording.enabled") { recording.enabled = v }
            if let node = r["flush_interval_seconds"] {
                if let v = node.float ?? node.string.flatMap(Double.init), v >= 0.05, v <= 60 { recording.flushInterval = v } else {
                    problem(node, "recording.flush_interval_seconds", "expected a number of seconds in 0.05...60")
                }
            }
            if let v = bool(r["record_input"], "recording.record_input") { recording.recordInput = v }
            if let v = string(r["on_failure"], "recording.on_failure", required: false) {
                if let p = RecordingPolicy.OnFailure(rawValue: v) { recording.onFailure = p } else {
                    problem(r["on_failure"], "recording.on_failure", "expected terminate or continue")
                }
            }
            if let v = int(r["retention_days"], "recording.retention_days", range: 1...36500) { recording.retentionDays = v }
        }

        var rules: [CommandRule] = []
        for (i, node) in list(f["command_rules"], "command_rules") {
            let p = "command_rules[\(i)]"
            let r = fields(node, p, known: ["pattern", "action", "users", "assets", "accounts"])
            guard let pattern = string(r["pattern"], "\(p).pattern") else { continue }
            var action = CommandRule.Action.deny
            if let a = string(r["action"], "\(p).action") {
                if let parsed = CommandRule.Action(rawValue: a) { action = parsed } else {
                    problem(r["action"], "\(p).action", "expected deny, warn or allow")
                }
            }
            let ruleUsers = strings(r["users"], "\(p).users"), ruleAssets = strings(r["assets"], "\(p).assets")
            for (k, u) in ruleUsers.enumerated() where !userNames.contains(u) {
                problem(r["users"]?.array()[k], "\(p).users[\(k)]", "no user named \"\(u)\"")
            }
            for (k, a) in ruleAssets.enumerated() where !assetNames.contains(a) {
                problem(r["assets"]?.array()[k], "\(p).assets[\(k)]", "no asset named \"\(a)\"")
            }
            do {
                rules.append(try CommandRule(number: i + 1, pattern: pattern, action: action, users: ruleUsers,
                                             assets: ruleAssets, accounts: strings(r["accounts"], "\(p).accounts")))
            } catch {
                problem(r["pattern"], "\(p).pattern", "not a valid regular expression")
            }
        }
        var outputLines = 20
        if let c = f["commands"] {
            let cf = fields(c, "commands", known: ["output_lines"])
            if let v = int(cf["output_lines"], "commands.output_lines", range: 0...1000) { outputLines = v }
        }

        var config = GatehouseConfig(configPath: configPath, dataDir: dataDir, listen: .init(ssh: listenSSH, web: listenWeb, rdp: listenRDP),
                                     users: users, assets: assets, grants: grants, security: security, recording: recording)
        config.rdp = rdp
        config.commandRules = rules
        config.commandOutputLines = outputLines
        return config
    }
}
