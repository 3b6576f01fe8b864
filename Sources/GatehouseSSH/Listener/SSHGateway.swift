import CLibSSH
import Dispatch
import Foundation
import GatehouseCore
import Logging

/// The SSH front door: accepts connections, gives each its own `ClientConnection`, and on
/// shutdown stops accepting and closes every session with a word to its user.
public final class SSHGateway: @unchecked Sendable {
    private let context: GatewayContext
    private let acceptQueue = DispatchQueue(label: "gatehouse.ssh.accept")
    private var bind: OpaquePointer?
    private var listener: ListeningSocket?
    private var acceptSource: DispatchSourceRead?
    private var connections: [ObjectIdentifier: ClientConnection] = [:]
    private let lock = NSLock()
    private var draining = false

    public init(context: GatewayContext) {
        self.context = context
    }

    /// The address actually listened on.
    public private(set) var boundAddress: HostPort?

    public func start() throws {
        _ = LibSSH.initialized
        let keyDir = context.config.dataDir + "/host_keys"
        try FileManager.default.createDirectory(atPath: keyDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let ed25519 = keyDir + "/ssh_host_ed25519_key", rsa = keyDir + "/ssh_host_rsa_key"
        try LibSSH.ensureHostKey(path: ed25519, type: SSH_KEYTYPE_ED25519, bits: 0)
        try LibSSH.ensureHostKey(path: rsa, type: SSH_KEYTYPE_RSA, bits: 3072)
        guard let bind = ssh_bind_new() else { throw GatewayError.setup("libssh: cannot create a server") }
        self.bind = bind
        if var level = ProcessInfo.processInfo.environment["GATEHOUSE_LIBSSH_LOG"].flatMap(Int32.init) {
            ssh_bind_options_set(bind, SSH_BIND_OPTIONS_LOG_VERBOSITY, &level)
        }
        for key in [ed25519, rsa] {
            guard ssh_bind_options_set(bind, SSH_BIND_OPTIONS_HOSTKEY, key) == SSH_OK else {
                throw GatewayError.setup("cannot load host key \(key): \(LibSSH.errorText(bind))")
            }
        }
        let listener = try ListeningSocket(context.config.listen.ssh)
        self.listener = listener
        boundAddress = HostPort(host: context.config.listen.ssh.host, port: listener.port)
        let source = DispatchSource.makeReadSource(fileDescriptor: listener.fd, queue: acceptQueue)
        source.setEventHandler { [weak self] in self?.acceptPending() }
        source.setCancelHandler { close(listener.fd) } // new connections are refused from now on
        source.activate()
        acceptSource = source
    }

    private func acceptPending() {
        guard let listener, let bind else { return }
        while let (fd, peer) = listener.accept() {
            if lock.withLock({ draining }) { close(fd); continue }
            // libssh gets its own descriptor for the socket; the connection watches `fd`.
            let libsshFD = dup(fd)
            guard libsshFD >= 0, let session = ssh_new() else { close(fd); if libsshFD >= 0 { close(libsshFD) }; continue }
            if var level = ProcessInfo.processInfo.environment["GATEHOUSE_LIBSSH_LOG"].flatMap(Int32.init) {
                ssh_options_set(session, SSH_OPTIONS_LOG_VERBOSITY, &level)
            }
            guard ssh_bind_accept_fd(bind, session, libsshFD) == SSH_OK else {
                context.logger.warning("cannot accept connection", metadata: ["from": "\(peer)", "error": "\(LibSSH.errorText(bind))"])
                ssh_free(session)
                close(fd)
                continue
            }
            var connectionID: ObjectIdentifier?
            let connection = ClientConnection(session: session, fd: fd, peer: peer, context: context) { [weak self] in
                guard let self, let connectionID else { return }
                _ = self.lock.withLock { self.connections.removeValue(forKey: connectionID) }
            }
            connectionID = ObjectIdentifier(connection)
            lock.withLock { connections[ObjectIdentifier(connection)] = connection }
        }
    }

    public var connectionCount: Int { lock.withLock { connections.count } }

    /// Stops accepting, tells every user, closes everything; returns when all are closed or
    /// `timeout` has passed.
    public func drain(message: String, timeout: TimeInterval = 10) {
        lock.withLock { draining = true }
        acceptQueue.sync {
            acceptSource?.cancel()
            acceptSource = nil
        }
        for connection in lock.withLock({ Array(connections.values) }) {
            connection.terminate(message: message, by: "shutdown")
        }
        let deadline = Date().addingTimeInterval(timeout)
        while connectionCount > 0 && Date() < deadline { usleep(20_000) }
    }
}
