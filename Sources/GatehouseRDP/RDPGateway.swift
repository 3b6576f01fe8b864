import CGatehouseRDP
import Foundation
import GatehouseCore
import Logging

/// The RDP listener: users connect with mstsc or xfreerdp, log in with their Gatehouse
/// credentials (inside TLS), name the asset in the user name (`alice#web01`,
/// `alice#deploy#web01`) or the routing token (`/load-balance-info:"Cookie: msts=web01"`),
/// and get the asset's desktop through the gateway, recorded.
///
/// FreeRDP runs its own threads (one per leg, see CGatehouseRDP); this type is the policy
/// side: who may connect where, with which stored account, and what is recorded.
public final class RDPGateway: @unchecked Sendable {
    public struct Dependencies: Sendable {
        public var config: GatehouseConfig
        public var registry: SessionRegistry
        public var audit: AuditTrail
        public var throttle: LoginThrottle
        public var logger: Logger

        public init(config: GatehouseConfig, registry: SessionRegistry, audit: AuditTrail, throttle: LoginThrottle, logger: Logger) {
            self.config = config
            self.registry = registry
            self.audit = audit
            self.throttle = throttle
            self.logger = logger
        }
    }

    public enum StartError: Error, CustomStringConvertible {
        case notConfigured
        case listener(String)
        public var description: String {
            switch self {
            case .notConfigured: return "listen.rdp and rdp.certificate/private_key are needed for RDP"
            case .listener(let text): return text
            }
        }
    }

    let deps: Dependencies
    let directory: Directory
    let certificates: AssetHostKeys
    private var server: OpaquePointer?

    public init(_ deps: Dependencies) {
        self.deps = deps
        directory = Directory(config: deps.config)
        certificates = AssetHostKeys(path: deps.config.dataDir + "/asset_rdp_certificates")
    }

    public func start() throws {
        guard let address = deps.config.listen.rdp, let tls = deps.config.rdp else { throw StartError.notConfigured }
        for file in [tls.certificate, tls.privateKey] where !FileManager.default.isReadableFile(atPath: file) {
            throw StartError.listener("cannot read \(file) (rdp.certificate / rdp.private_key; scripts/make-rdp-cert makes a development pair)")
        }
        var callbacks = gh_rdp_callbacks()
        callbacks.server_context = Unmanaged.passUnretained(self).toOpaque()
        callbacks.logon = { serverContext, session, logon, target, reason, reasonSize, code in
            let gateway = Unmanaged<RDPGateway>.fromOpaque(serverContext!).takeUnretainedValue()
            return gateway.logon(session: session!, logon: logon!.pointee, target: target!, reason: reason!, reasonSize: reasonSize, code: code!)
        }
        callbacks.verify_certificate = { context, host, port, fingerprint in
            RDPSession.from(context).verifyCertificate(fingerprint: fingerprint.map { String(cString: $0) } ?? "") ? 1 : 0
        }
        callbacks.connected = { context, width, height in
            RDPSession.from(context).connected(width: Int(width), height: Int(height))
        }
        callbacks.resized = { context, width, height in
            RDPSession.from(context).resized(width: Int(width), height: Int(height))
        }
        callbacks.frame = { context, pixels, stride, width, height, rects, count in
            guard let pixels, let rects else { return 1 }
            return RDPSession.from(context).frame(pixels: pixels, stride: Int(stride), width: Int(width), height: Int(height),
                                                  rects: UnsafeBufferPointer(start: rects, count: count)) ? 1 : 0
        }
        callbacks.clipboard = { context, toAsset, format, data, length in
            guard let data else { return }
            RDPSession.from(context).clipboard(toAsset: toAsset != 0, text: ClipboardText(format: format, bytes: UnsafeRawBufferPointer(start: data, count: length)))
        }
        callbacks.pointer = { context, x, y in
            RDPSession.from(context).pointer(x: Int(x), y: Int(y))
        }
        callbacks.nla_hash = { serverContext, user, hash in
            let gateway = Unmanaged<RDPGateway>.fromOpaque(serverContext!).takeUnretainedValue()
            let typed = user.map { String(cString: $0) } ?? ""
            guard let hash, let name = LoginName(parsing: typed),
                  let stored = try? gateway.deps.audit.store.rdpPassword(user: name.user, now: Date()), stored.count == 16 else {
                gateway.deps.logger.warning("rdp login refused", metadata: ["user": "\(typed)", "reason": "NLA without a valid one-time RDP password"])
                GatehouseCounters.loginFailed(via: "rdp")
                return 0
            }
            stored.copyBytes(to: hash, count: 16)
            return 1
        }
        callbacks.closed = { context, reason, toUser, fromUser in
            // Balances the retain in `logon`: the C side does not use the context after this.
            let session = Unmanaged<RDPSession>.fromOpaque(context!).takeRetainedValue()
            session.closed(reason: reason.map { String(cString: $0) } ?? "", bytesToUser: Int(toUser), bytesFromUser: Int(fromUser))
        }
        var errorText = [CChar](repeating: 0, count: 512)
        let started: OpaquePointer? = address.host.withCString { host in
            tls.certificate.withCString { cert in
                tls.privateKey.withCString { key in
                    var options = gh_rdp_server_options(host: host, port: UInt16(address.port), certificate_file: cert,
                                                        private_key_file: key, nla: tls.nla ? 1 : 0,
                                                        clipboard: tls.clipboardText ? 1 : 0)
                    return gh_rdp_server_start(&options, &callbacks, &errorText, errorText.count)
                }
            }
        }
        guard let started else {
            throw StartError.listener(String(decoding: errorText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        server = started
        deps.logger.info("listening on rdp \(address)")
    }

    /// Stops accepting; sessions already online go on until terminated.
    public func stop() {
        if let server { gh_rdp_server_stop(server) }
        server = nil
    }

    /// A hash to verify against when the user does not exist, so that unknown users take as
    /// long to refuse as wrong passwords.
    private static let decoyHash = PasswordHasher.hash(password: UUID().uuidString)

    struct Refusal: Error {
        var log: String
        var code: UInt32
    }

    /// On the connection's thread: authenticate, route, and set up the session.
    private func logon(session: OpaquePointer, logon: gh_rdp_logon, target: UnsafeMutablePointer<gh_rdp_target>,
                       reason: UnsafeMutablePointer<CChar>, reasonSize: Int, code: UnsafeMutablePointer<UInt32>) -> UnsafeMutableRawPointer? {
        var request = LogonRequest(logon)
        switch authorize(&request) {
        case .failure(let refusal):
            deps.logger.warning("rdp login refused", metadata: ["user": "\(request.username)", "from": "\(request.address)", "reason": "\(refusal.log)"])
            _ = refusal.log.withCString { strncpy(reason, $0, reasonSize - 1) }
            code.pointee = refusal.code
            return nil
        case .success(let (login, route, password)):
            let port = route.asset.rdpPort ?? 3389
            target.pointee.port = UInt16(port)
            target.pointee.timeout_ms = UInt32(deps.config.security.upstreamTimeout * 1000)
            withUnsafeMutableBytes(of: &target.pointee.host) { copy(route.asset.host, into: $0) }
            withUnsafeMutableBytes(of: &target.pointee.username) { copy(route.account.name, into: $0) }
            withUnsafeMutableBytes(of: &target.pointee.password) { copy(password, into: $0) }
            let rdpSession = RDPSession(gateway: self, handle: session, login: login, target: route, request: request)
            gh_rdp_session_retain(session)
            deps.logger.info("rdp login", metadata: ["user": "\(login.user)", "from": "\(request.address)", "target": "\(route.label)",
                                                     "client": "\(request.clientName) build \(request.clientBuild)"])
            return Unmanaged.passRetained(rdpSession).toOpaque()
        }
    }

    private func copy(_ text: String, into buffer: UnsafeMutableRawBufferPointer) {
        let bytes = Array(text.utf8.prefix(buffer.count - 1))
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        buffer.copyBytes(from: bytes)
    }

    private func authorize(_ request: inout LogonRequest) -> Result<(LoginName, Directory.Target, String), Refusal> {
        let denied = UInt32(GH_RDP_REASON_PRIVILEGES)
        guard var login = LoginName(parsing: request.username) else {
            return .failure(Refusal(log: "malformed user name \"\(request.username)\"", code: denied))
        }
        if login.asset == nil, let token = request.routingToken {
            login.asset = token.split(separator: ":").first.map(String.init) // msts=host[:port]
        }
        if deps.throttle.isLocked(user: login.user, address: request.address) {
            return .failure(Refusal(log: "locked out after repeated failures", code: denied))
        }
        guard let user = directory.user(named: login.user) else {
            _ = PasswordHasher.verify(password: request.password, hash: Self.decoyHash)
            return .failure(countFailure(login.user, request, "unknown user"))
        }
        // A one-time RDP password (the only kind NLA can check), else the user's own.
        if RDPPasswords.consume(user: user.name, password: request.password, store: deps.audit.store) {
            request.method = "one-time RDP password" + (request.nla ? " (NLA)" : "")
        } else if request.nla {
            return .failure(countFailure(login.user, request, "NLA without a valid one-time RDP password"))
        } else if let hash = user.passwordHash, PasswordHasher.verify(password: request.password, hash: hash) {
            request.method = "password"
        } else {
            if user.passwordHash == nil { _ = PasswordHasher.verify(password: request.password, hash: Self.decoyHash) }
            return .failure(countFailure(login.user, request, "wrong password"))
        }
        deps.throttle.recordSuccess(user: login.user, address: request.address)
        guard let assetName = login.asset else {
            return .failure(Refusal(log: "no asset named: log in as \(login.user)#ASSET", code: denied))
        }
        let route: Directory.Target
        switch directory.route(user: login.user, asset: assetName, account: login.account) {
        case .failure(let error):
            recordFailed(login: login, asset: assetName, account: login.account ?? "", request: request, reason: "\(error)")
            return .failure(Refusal(log: "\(error)", code: denied))
        case .success(let r):
            route = r
        }
        guard route.asset.rdpPort != nil else {
            let reason = "asset \"\(route.asset.name)\" takes no RDP sessions (no rdp_port)"
            recordFailed(login: login, asset: route.asset.name, account: route.account.name, request: request, reason: reason)
            return .failure(Refusal(log: reason, code: UInt32(GH_RDP_REASON_DENIED)))
        }
        switch route.account.credential.password() {
        case .failure(let error):
            let reason = "the stored credential of \(route.label) is unavailable: \(error)"
            recordFailed(login: login, asset: route.asset.name, account: route.account.name, request: request, reason: reason)
            return .failure(Refusal(log: reason, code: UInt32(GH_RDP_REASON_DENIED)))
        case .success(let password):
            return .success((login, route, password))
        }
    }

    private func countFailure(_ user: String, _ request: LogonRequest, _ reason: String) -> Refusal {
        GatehouseCounters.loginFailed(via: "rdp")
        if deps.throttle.recordFailure(user: user, address: request.address) {
            deps.logger.warning("login locked out", metadata: ["user": "\(user)", "from": "\(request.address)"])
        }
        return Refusal(log: reason, code: UInt32(GH_RDP_REASON_PRIVILEGES))
    }

    func recordFailed(login: LoginName, asset: String, account: String, request: LogonRequest, reason: String) {
        let record = RDPSession.baseRecord(login: login, asset: asset, account: account, request: request)
        deps.audit.recordFailed({ var r = record; r.reason = reason; return r }(),
                                activities: RDPSession.connectionActivities(login: login, request: request) + [Activity(.upstreamFailed, reason)])
    }
}

/// What the user's client sent at logon, copied out of the C callback.
struct LogonRequest: Sendable {
    var username: String
    var domain: String
    var password: String
    var routingToken: String?
    var address: String
    var clientName: String
    var clientBuild: Int
    var width: Int
    var height: Int
    var colorDepth: Int
    var nla: Bool
    /// How the user proved who they are, for the records.
    var method = "password"

    init(_ logon: gh_rdp_logon) {
        func text(_ p: UnsafePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }
        username = text(logon.username)
        domain = text(logon.domain)
        password = text(logon.password)
        routingToken = logon.routing_token.map { String(cString: $0) }
        address = text(logon.client_address)
        clientName = text(logon.client_hostname)
        clientBuild = Int(logon.client_build)
        width = Int(logon.width)
        height = Int(logon.height)
        colorDepth = Int(logon.color_depth)
        nla = logon.nla != 0
    }
}

extension RDPGateway {
    /// Shutdown: ends every RDP session (the clients are told an administrator disconnected
    /// them) and waits up to `timeout` for them to close.
    public static func drain(_ registry: SessionRegistry, timeout: TimeInterval = 10) {
        let rdp = { registry.all.filter { $0.summary.protocolName == "rdp" } }
        for session in rdp() { session.terminate(message: "the gateway is shutting down", by: "shutdown") }
        let deadline = Date().addingTimeInterval(timeout)
        while !rdp().isEmpty && Date() < deadline { usleep(20_000) }
    }
}
