import CLibSSH
import Dispatch
import Foundation
import GatehouseCore

/// One session channel of a user's connection, and the asset leg behind it.
///
/// Lifecycle: the client asks for a program (shell, exec, subsystem); then either the asset
/// menu runs (shell without an asset in the login name), or the gateway connects to the asset
/// and relays until one side ends. After a menu-chosen asset session the menu comes back.
final class GatewayChannel: @unchecked Sendable {
    enum Phase {
        case awaitingProgram
        case menu(AssetMenu)
        case connecting(Directory.Target)
        case relaying(Relay)
        /// Watching or joining someone else's session (see GatewayChannel+Watch).
        case watching(Watch)
        /// Ended by an administrator or the gateway: the last words still go out to the user
        /// (a busy session's window may be full), for at most a second, then the channel closes.
        case closing(Closing)
        case finished
    }

    struct Closing {
        var pending: [UInt8]
        var deadline: DispatchTime
        var status: Int32
    }

    struct Relay {
        var leg: UpstreamLeg
        var target: Directory.Target
        var returnToMenu: Bool
        var started = Date()
        var stdinEOFSent = false
        var stdoutEOF = false
        var stderrEOF = false
        /// libssh holds output for the asset that the socket has not taken yet.
        var legOutputPending = false
        var input = ChannelPipe()
        var output = ChannelPipe()
        var errors = ChannelPipe(fromStderr: true, toStderr: true)
    }

    /// Strong: a connect in flight may outlive the connection's own bookkeeping. The cycle is
    /// broken when the connection drops its channels (`release()`).
    let connection: ClientConnection
    let channel: OpaquePointer
    let login: LoginName
    var pty: PtyRequest?
    var environment: [(String, String)] = []
    var program: ChannelProgram?
    var notices: [String] = []
    var phase: Phase = .awaitingProgram
    /// The audit record of the asset session being relayed, if any.
    var audit: AuditSession?
    var handle: ChannelSessionHandle?
    var recorder: TerminalRecorder? { audit?.recorder }
    /// Reads commands off the screen (shell) or takes the exec string; nil for subsystems.
    var extractor: CommandExtractor?
    /// A rule stopped a command: the line to show the user after this round.
    var blockedNotice: String?
    /// A recording failure has been dealt with (policy applied once).
    var recordingFailureHandled = false
    /// What watchers and joiners of this channel's session attach to.
    var live: LiveChannel?
    /// Typed by write-mode joiners, waiting for the asset's window.
    var injected: [UInt8] = []
    /// Who typed the input recorded last (the owner is nil).
    var lastInputAuthor: String?
    /// Audits file transfers (SFTP subsystem, scp exec) as they cross.
    var transfers: TransferAuditing?
    /// What the transfer auditor answers the user itself (a refusal), waiting for the window.
    var transferReply: [UInt8] = []
    var transferFailure: String?
    /// The owner's `~+` / `~*` escapes.
    var shareEscape = ShareEscape()
    var shareRequests: [ShareEscape.Request] = []
    private var callbacks: UnsafeMutablePointer<ssh_channel_callbacks_struct>

    init(connection: ClientConnection, channel: OpaquePointer, login: LoginName) {
        self.connection = connection
        self.channel = channel
        self.login = login
        callbacks = .allocate(capacity: 1)
        callbacks.initialize(to: ssh_channel_callbacks_struct())
        installCallbacks()
    }

    deinit {
        callbacks.deinitialize(count: 1)
        callbacks.deallocate()
    }

    private var released = false

    /// Detaches from libssh so that no callback can reach this object once it is gone.
    /// Called by the connection while its session is still alive. The channel itself stays
    /// libssh's: it is freed with the session (freeing it earlier races with packets that
    /// libssh is still routing to it).
    func release() {
        guard !released else { return }
        released = true
        ssh_remove_channel_callbacks(channel, callbacks)
        if !clientClosed { ssh_channel_close(channel) }
    }

    var isDone: Bool {
        if case .finished = phase { return true }
        return false
    }

    var clientClosed: Bool { ssh_channel_is_closed(channel) != 0 }

    // MARK: Requests from the client

    private func installCallbacks() {
        let cb = callbacks
        cb.pointee.size = MemoryLayout<ssh_channel_callbacks_struct>.size
        cb.pointee.userdata = Unmanaged.passUnretained(self).toOpaque()
        cb.pointee.channel_pty_request_function = { _, _, term, cols, rows, _, _, ud in
            let c = Unmanaged<GatewayChannel>.fromOpaque(ud!).takeUnretainedValue()
            guard case .awaitingProgram = c.phase else { return -1 }
            // A 0x0 terminal (some clients send it) would break full-screen programs.
            c.pty = PtyRequest(term: term.map { String(cString: $0) } ?? "xterm",
                               columns: cols > 0 ? Int(cols) : 80, rows: rows > 0 ? Int(rows) : 24)
            return 0
        }
        cb.pointee.channel_env_request_function = { _, _, name, value, ud in
            let c = Unmanaged<GatewayChannel>.fromOpaque(ud!).takeUnretainedValue()
            guard let name, let value, c.environment.count < 64 else { return -1 }
            c.environment.append((String(cString: name), String(cString: value)))
            return 0
        }
        cb.pointee.channel_shell_request_function = { _, _, ud in
            Unmanaged<GatewayChannel>.fromOpaque(ud!).takeUnretainedValue().request(.shell)
        }
        cb.pointee.channel_exec_request_function = { _, _, command, ud in
            Unmanaged<GatewayChannel>.fromOpaque(ud!).takeUnretainedValue().request(.exec(command.map { String(cString: $0) } ?? ""))
        }
        cb.pointee.channel_subsystem_request_function = { _, _, name, ud in
            Unmanaged<GatewayChannel>.fromOpaque(ud!).takeUnretainedValue().request(.subsystem(name.map { String(cString: $0) } ?? ""))
        }
        cb.pointee.channel_pty_window_change_function = { _, _, cols, rows, _, _, ud in
            let c = Unmanaged<GatewayChannel>.fromOpaque(ud!).takeUnretainedValue()
            c.resize(columns: Int(cols), rows: Int(rows))
            return 0
        }
        cb.pointee.channel_signal_function = { _, _, signal, ud in
            let c = Unmanaged<GatewayChannel>.fromOpaque(ud!).takeUnretainedValue()
            if case let .relaying(relay) = c.phase, let signal { ssh_channel_request_send_signal(relay.leg.channel, signal) }
        }
        cb.pointee.channel_auth_agent_req_function = { _, _, ud in
            let c = Unmanaged<GatewayChannel>.fromOpaque(ud!).takeUnretainedValue()
            c.notices.append("Agent forwarding is disabled on this gateway.")
        }
        ssh_set_channel_callbacks(channel, cb)
    }

    private func request(_ program: ChannelProgram) -> Int32 {
        guard self.program == nil else { return -1 }
        self.program = program
        return 0 // started by the next pump, after libssh has sent the reply
    }

    private func resize(columns: Int, rows: Int) {
        guard columns > 0, rows > 0 else { return }
        pty?.columns = columns
        pty?.rows = rows
        connection.emit(.resize(columns: columns, rows: rows))
        if case let .relaying(relay) = phase {
            ssh_channel_change_pty_size(relay.leg.channel, Int32(columns), Int32(rows))
            recorder?.resize(columns: columns, rows: rows)
            extractor?.resize(columns: columns, rows: rows)
            live?.resize(columns: columns, rows: rows)
        }
    }

    // MARK: Pumping

    /// Advances this channel; true when anything moved or changed.
    func pump() -> Bool {
        switch phase {
        case .awaitingProgram:
            if clientClosed { teardown(); return true }
            guard let program else { return false }
            start(program)
            return true
        case .menu(var menu):
            if clientClosed { teardown(); return true }
            // Everything libssh holds, at once (see ChannelPipe on why never a part).
            let available = ssh_channel_poll(channel, 0)
            if available == SSH_EOF || available == SSH_ERROR { finishClient(status: 0); return true }
            guard available > 0 else { return false }
            let want = Int(min(available, 8 << 20))
            var n: Int32 = 0
            let bytes = [UInt8](unsafeUninitializedCapacity: want) { buffer, initialized in
                n = ssh_channel_read_nonblocking(channel, buffer.baseAddress, UInt32(want), 0)
                initialized = max(0, Int(n))
            }
            guard n > 0 else { return false }
            let (output, action) = menu.feed(bytes)
            phase = .menu(menu)
            write(output)
            switch action {
            case .none: break
            case .quit: finishClient(status: 0)
            case .connect(let target): connect(target, returnToMenu: true)
            case .refresh: showMenu(note: nil)
            case .watch(let id): startWatch(.watch(id.description), returnToMenu: true)
            }
            return true
        case .connecting:
            if clientClosed { phase = .finished; return true }
            return false
        case .relaying(var relay):
            // Moving data makes libssh write (window adjusts, key re-exchange replies) and
            // flushing makes it read; keep going until a flush leaves nothing unsent and
            // nothing readable that could move, so no byte waits for an event that has passed.
            var movedAny = false
            for _ in 0..<64 {
                relay.leg.poll()
                let moved = relayOnce(&relay)
                guard case .relaying = phase else { return true }
                relay.legOutputPending = ssh_blocking_flush(relay.leg.session, 0) == SSH_AGAIN
                movedAny = movedAny || moved
                if moved || (!relay.legOutputPending && canMove(relay)) { continue }
                break
            }
            phase = .relaying(relay)
            return movedAny
        case .watching(var watch):
            let moved = pumpWatch(&watch)
            if case .watching = phase { phase = .watching(watch) }
            return moved
        case .closing(var closing):
            if clientClosed { phase = .finished; return true }
            let moved = sendWhatFits(&closing.pending, to: channel, stderr: true)
            if closing.pending.isEmpty || DispatchTime.now() >= closing.deadline {
                finishClient(status: closing.status)
                return true
            }
            phase = .closing(closing)
            return moved
        case .finished:
            return false
        }
    }

    func armUpstreamWrites() {
        if case let .relaying(relay) = phase {
            relay.leg.watcher?.wantsWrite(relay.legOutputPending)
        }
    }

    private func start(_ program: ChannelProgram) {
        if let asset = login.asset, let request = WatchRequest(asset: asset) {
            startWatch(request)
            return
        }
        if let asset = login.asset {
            switch connection.context.directory.route(user: login.user, asset: asset, account: login.account) {
            case .success(let target) where !target.asset.ssh:
                let reason = "asset \"\(target.asset.name)\" takes no SSH sessions (it has an rdp_port and no ssh_port)"
                recordFailed(asset: asset, account: target.account.name, reason: reason)
                fail(reason, activity: .upstreamFailed)
            case .success(let target):
                if case let .exec(command) = program, case let verdict = policy(for: target).judge(command), verdict.denied {
                    refuseExec(command, verdict: verdict, target: target)
                    return
                }
                if let refusal = refusedTransfer(program, target: target) {
                    refuseTransfer(refusal, target: target)
                    return
                }
                connect(target, returnToMenu: false)
            case .failure(let error):
                recordFailed(asset: asset, account: login.account ?? "", reason: "\(error)")
                fail("\(error)", activity: .upstreamFailed)
            }
            return
        }
        guard program == .shell else {
            fail("name the asset to run a command: ssh \(login.user)@ASSET@gateway 'command'", activity: .upstreamFailed)
            return
        }
        showMenu(note: nil)
    }

    func showMenu(note: String?) {
        let targets = connection.context.directory.targets(for: login.user).filter(\.asset.ssh)
        let access = sessionAccess
        let online = access.mayWatch(login.user)
            ? access.registry.all.filter { $0.live != nil }.map(\.summary).sorted { $0.started < $1.started } : []
        let menu = AssetMenu(user: login.user, targets: targets, echo: pty != nil, online: online)
        write(Array(menu.screen(note: note).utf8))
        phase = .menu(menu)
    }

    private func connect(_ target: Directory.Target, returnToMenu: Bool) {
        phase = .connecting(target)
        connection.updateSummary { $0.asset = target.asset.name; $0.account = target.account.name }
        if returnToMenu { write(Array("Connecting to \(target.label)...\r\n".utf8)) }
        let connector = UpstreamConnector(target: target, hostKeys: connection.context.hostKeys,
                                          timeout: connection.context.config.security.upstreamTimeout,
                                          pty: pty, environment: environment, program: program ?? .shell)
        let queue = connection.queue
        UpstreamConnector.threads.submit {
            let result = SendableResult(connector.connect())
            queue.async { self.didConnect(result.value, target: target, returnToMenu: returnToMenu) }
        }
    }

    private func didConnect(_ result: Result<UpstreamLeg, UpstreamError>, target: Directory.Target, returnToMenu: Bool) {
        guard case .connecting = phase, connection.phase != .closed else {
            if case .success(let leg) = result { leg.shutdown() }
            return
        }
        let log = connection.logger
        switch result {
        case .failure(let error):
            recordFailed(asset: target.asset.name, account: target.account.name, reason: "\(error)")
            log.warning("asset connection failed", metadata: ["user": "\(login.user)", "asset": "\(target.asset.name)",
                                                              "account": "\(target.account.name)", "error": "\(error)"])
            if returnToMenu {
                connection.emit(.activity(Activity(.upstreamFailed, "\(error)")))
                write(Array("gatehouse: \(error)\r\n".utf8))
                showMenu(note: nil)
            } else {
                fail("\(error)", activity: .upstreamFailed)
            }
        case .success(let leg):
            log.info("session start", metadata: ["user": "\(login.user)", "asset": "\(target.asset.name)",
                                                 "account": "\(target.account.name)", "from": "\(connection.peer)",
                                                 "program": "\(program?.label ?? "shell")"])
            connection.emit(.activity(Activity(.upstreamConnected, "\(target.label) (\(leg.fingerprint))")))
            phase = .relaying(Relay(leg: leg, target: target, returnToMenu: returnToMenu))
            guard beginAudit(target: target, leg: leg) else { return }
            if let banner = leg.banner, !banner.isEmpty { writeStderr(banner) }
            for notice in notices { writeStderr("gatehouse: \(notice)\n") }
            notices.removeAll()
            if let pty { ssh_channel_change_pty_size(leg.channel, Int32(pty.columns), Int32(pty.rows)) }
            let connection = self.connection
            leg.attachEvent()
            let watched = dup(leg.fd)
            guard watched >= 0 else {
                // Out of descriptors: refuse this session cleanly, keep serving the others.
                let reason = "the gateway is out of file descriptors (\(String(cString: strerror(errno))))"
                connection.logger.error("cannot watch asset connection", metadata: ["error": "\(reason)"])
                abort(message: reason, by: "gatehouse")
                connection.pump()
                return
            }
            leg.watcher = SocketWatcher(owning: watched, queue: connection.queue) { [weak connection] in connection?.pump() }
            connection.pump()
        }
    }

    // MARK: Output and endings

    func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty, !clientClosed else { return }
        bytes.withUnsafeBytes {
            _ = ssh_channel_write(channel, $0.baseAddress, UInt32($0.count))
            recorder?.output($0)
            live?.output($0)
        }
        if !connection.context.sinks.isEmpty { connection.emit(.output(Data(bytes), stream: .stdout)) }
    }

    /// A line for the user's terminal. On a PTY the terminal is raw, so newlines need CR.
    func writeStderr(_ text: String) {
        guard !clientClosed else { return }
        var t = text
        if pty != nil { t = t.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n") }
        let bytes = Array(t.utf8)
        bytes.withUnsafeBytes {
            _ = ssh_channel_write_stderr(channel, $0.baseAddress, UInt32($0.count))
            recorder?.output($0)
            live?.output($0)
        }
        if !connection.context.sinks.isEmpty { connection.emit(.output(Data(bytes), stream: .stderr)) }
    }

    func fail(_ message: String, activity: Activity.Kind) {
        connection.logger.warning("session refused", metadata: ["user": "\(login.user)", "from": "\(connection.peer)", "reason": "\(message)"])
        connection.emit(.activity(Activity(activity, message)))
        writeStderr("gatehouse: \(message)\n")
        finishClient(status: 1)
    }

    func finishClient(status: Int32) {
        if !clientClosed { ssh_channel_request_send_exit_status(channel, status) }
        closeClient()
    }

    func closeClient() {
        if !clientClosed {
            ssh_channel_send_eof(channel)
            ssh_channel_close(channel)
        }
        phase = .finished
    }

    /// Administrator or shutdown: tell the user, then end both legs.
    func abort(message: String, by actor: String) {
        if case .closing = phase { return }
        guard !isDone else { return }
        if case let .relaying(relay) = phase { relay.leg.shutdown() }
        if case let .watching(watch) = phase { endWatch(watch) }
        let text = pty != nil ? "\r\ngatehouse: \(message)\r\n" : "\ngatehouse: \(message)\n"
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes {
            recorder?.output($0)
            live?.output($0)
        }
        endAudit(.terminated, by: actor, reason: message)
        phase = .closing(Closing(pending: clientClosed ? [] : bytes, deadline: .now() + 1, status: 255))
        _ = pump()
    }

    /// The connection is going away: release the asset leg without touching the client.
    func teardown() {
        if case let .relaying(relay) = phase { relay.leg.shutdown() }
        if case let .watching(watch) = phase { endWatch(watch) }
        endAudit(.finished, reason: "the user disconnected")
        phase = .finished
    }
}

extension UpstreamLeg.Exit {
    var text: String {
        switch self {
        case .status(let s): return "exit status \(s)"
        case let .signal(name, _, _): return "signal \(name)"
        }
    }
}

/// What the registry holds for a relayed session: enough to list it and to end it.
final class ChannelSessionHandle: ManagedSession, @unchecked Sendable {
    let summary: SessionSummary
    let live: LiveChannel?
    private weak var channel: GatewayChannel?
    private weak var recorder: TerminalRecorder?
    private let queue: DispatchQueue

    var recorderQueue: (bytes: Int, lag: Double)? { recorder?.queue }

    init(channel: GatewayChannel, record: SessionRecord, live: LiveChannel?) {
        self.channel = channel
        self.recorder = channel.recorder
        self.live = live
        self.queue = channel.connection.queue
        summary = SessionSummary(id: SessionID(UUID(uuidString: record.id) ?? SessionID.randomUUID()), user: record.user, asset: record.asset,
                                 account: record.account, remoteAddress: record.remoteAddress, protocolName: "ssh",
                                 started: record.started)
    }

    func terminate(message: String, by actor: String) {
        queue.async { [weak channel] in
            guard let channel else { return }
            channel.abort(message: message, by: actor)
            channel.connection.pump()
        }
    }
}

/// Carries a result across queues; the leg inside is owned by exactly one queue at a time.
struct SendableResult<T, E: Error>: @unchecked Sendable {
    let value: Result<T, E>
    init(_ value: Result<T, E>) { self.value = value }
}
