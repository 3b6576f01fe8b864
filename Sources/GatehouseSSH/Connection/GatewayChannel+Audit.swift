import CLibSSH
import Foundation
import GatehouseCore

/// The audit side of a channel: its session record, recording, command extractor and rules.
extension GatewayChannel {
    func baseRecord(asset: String, account: String) -> SessionRecord {
        SessionRecord(id: SessionID.randomUUID().uuidString.lowercased(), user: login.user, asset: asset, account: account,
                      protocolName: protocolName, remoteAddress: connection.peer, clientSoftware: connection.clientSoftware,
                      program: program?.label ?? "shell", started: Date(), state: .online)
    }

    /// `sftp` for the SFTP subsystem, `scp` for legacy scp, `ssh` for everything else.
    var protocolName: String {
        switch program ?? .shell {
        case .subsystem("sftp"): return "sftp"
        case .exec(let command) where ScpAuditor.direction(of: command) != nil: return "scp"
        default: return "ssh"
        }
    }

    func connectionActivities() -> [Activity] {
        [Activity(.connected, "from \(connection.peer) with \(connection.clientSoftware)", time: connection.started),
         Activity(.authenticated, "\(login.user) by \(connection.authMethod)", time: connection.started)]
    }

    func recordFailed(asset: String, account: String, reason: String) {
        connection.context.audit.recordFailed(
            { var r = baseRecord(asset: asset, account: account); r.reason = reason; return r }(),
            activities: connectionActivities() + [Activity(.upstreamFailed, reason)])
    }

    /// Opens the audit record and, for terminals, the recording. False when the session may
    /// not go on because it cannot be recorded.
    func beginAudit(target: Directory.Target, leg: UpstreamLeg) -> Bool {
        let trail = connection.context.audit
        let session = trail.begin(baseRecord(asset: target.asset.name, account: target.account.name),
                                  activities: connectionActivities() + [Activity(.upstreamConnected, "\(target.label) (\(leg.fingerprint))")])
        audit = session
        GatehouseCounters.sessionStarted(protocol: protocolName)
        transfers = makeTransferAuditor(target: target, session: session)
        if case .subsystem = program ?? .shell {
            register(session, live: nil)
            return true
        }
        if transfers != nil, case let .exec(command) = program ?? .shell {
            // Legacy scp: the files are audited one by one (with checksums); recording their
            // bytes as a terminal would store every file again and cost the transfer most of
            // its speed. The command itself is kept.
            session.command(CommandRecord(sessionID: session.id, time: Date(), offset: 0, command: command, output: "",
                                          risk: policy(for: target).judge(command).risk, rule: policy(for: target).judge(command).rule))
            register(session, live: nil)
            return true
        }
        let queue = connection.queue
        do {
            try session.startRecording(width: pty?.columns ?? 80, height: pty?.rows ?? 24, term: pty?.term, sessionQueue: queue,
                                       onFailure: { [weak self] message in self?.recordingFailed(message) },
                                       onDrain: { [weak connection] in connection?.pump() })
        } catch {
            recordingFailed("\(error)")
            guard case .relaying = phase else { return false }
        }
        startExtractor(target: target, session: session)
        register(session, live: makeLiveChannel(session))
        return true
    }

    private func register(_ session: AuditSession, live: LiveChannel?) {
        self.live = live
        let handle = ChannelSessionHandle(channel: self, record: session.record, live: live)
        self.handle = handle
        connection.context.registry.add(handle)
    }

    private func makeLiveChannel(_ session: AuditSession) -> LiveChannel {
        LiveChannel(sessionID: session.id, owner: login.user, asset: session.record.asset, started: session.record.started,
                    columns: pty?.columns ?? 80, rows: pty?.rows ?? 24, sessionQueue: connection.queue,
                    screen: { [weak self] in self?.extractor?.currentScreen.snapshot() ?? [] },
                    hooks: .init(
                        type: { [weak self] bytes, author in self?.inject(bytes, author: author) },
                        announce: { [weak self] text in
                            guard let self, self.audit != nil else { return }
                            self.writeStderr("\r\ngatehouse: \(text)\n")
                        }))
    }

    /// Input from a write-mode joiner: judged by the same rules as the owner's, recorded with
    /// its author, sent as the asset's window allows.
    func inject(_ bytes: [UInt8], author: String) {
        guard case .relaying = phase else { return }
        var forward = bytes
        if pty != nil, let extractor {
            let decision = extractor.input(bytes)
            forward = decision.forward
            if let notice = decision.blockedNotice { writeStderr("\r\ngatehouse: \(notice) (typed by \(author))\n") }
        }
        if let recorder, recorder.options.recordInput, !forward.isEmpty {
            if lastInputAuthor != author {
                lastInputAuthor = author
                _ = recorder.marker("input from \(author)")
            }
            forward.withUnsafeBytes { recorder.input($0) }
        }
        injected += forward
        connection.pump()
    }

    func policy(for target: Directory.Target) -> CommandPolicy {
        CommandPolicy(rules: connection.context.config.commandRules, user: login.user,
                      asset: target.asset.name, account: target.account.name)
    }

    func startExtractor(target: Directory.Target, session: AuditSession) {
        var options = CommandExtractor.Options()
        options.outputLines = connection.context.config.commandOutputLines
        let sessionID = session.id, started = session.record.started
        let extractor = CommandExtractor(
            columns: pty?.columns ?? 80, rows: pty?.rows ?? 24, policy: policy(for: target), options: options,
            hooks: .init(
                started: { [weak self] command, verdict in
                    self?.recorder?.marker(command) ?? Date().timeIntervalSince(started)
                },
                finished: { [weak session] extracted in
                    session?.command(CommandRecord(sessionID: sessionID, time: extracted.time, offset: extracted.offset,
                                                   command: extracted.command, output: extracted.output,
                                                   risk: extracted.verdict.risk, rule: extracted.verdict.rule))
                }))
        if case let .exec(command) = program {
            extractor.exec(command, verdict: policy(for: target).judge(command))
        }
        self.extractor = extractor
    }

    /// A transfer the grant does not allow (legacy scp: known before connecting) is refused and recorded.
    func refuseTransfer(_ reason: String, target: Directory.Target) {
        var record = baseRecord(asset: target.asset.name, account: target.account.name)
        record.reason = reason
        connection.context.audit.recordFailed(record, activities: connectionActivities() + [Activity(.transferRefused, reason)])
        fail(reason, activity: .transferRefused)
    }

    /// An exec whose command a `deny` rule forbids never reaches the asset.
    func refuseExec(_ command: String, verdict: CommandPolicy.Verdict, target: Directory.Target) {
        var record = baseRecord(asset: target.asset.name, account: target.account.name)
        let reason = "command blocked by rule \(verdict.rule ?? "?")"
        record.reason = reason
        connection.context.audit.recordFailed(record, activities: connectionActivities() + [Activity(.upstreamFailed, reason)],
                                              commands: [CommandRecord(sessionID: record.id, time: Date(), offset: 0, command: command,
                                                                       output: "", risk: .denied, rule: verdict.rule)])
        fail("\(reason): \(CommandExtractor.printable(command))", activity: .upstreamFailed)
    }

    func recordingFailed(_ message: String) {
        guard !recordingFailureHandled, audit != nil else { return }
        recordingFailureHandled = true
        connection.logger.error("recording failed", metadata: ["session": "\(audit?.record.shortID ?? "-")", "error": "\(message)"])
        switch connection.context.audit.policy.onFailure {
        case .terminate:
            abort(message: "this session cannot be recorded (\(message)), so it has been ended", by: "gatehouse")
            connection.pump()
        case .continue:
            audit?.activity(Activity(.recordingGap, "recording stopped: \(message)"))
            audit?.recorder = nil
        }
    }

    func endAudit(_ state: SessionState, by actor: String? = nil, reason: String) {
        extractor?.finish()
        extractor = nil
        transfers?.finish()
        transfers = nil
        live?.end(state == .terminated ? "the session was terminated: \(reason)" : "the session ended")
        live = nil
        guard let audit else { return }
        self.audit = nil
        if let handle { connection.context.registry.remove(handle.summary.id) }
        handle = nil
        GatehouseCounters.bytesRelayed(toAsset: connection.bytesFromClient, toUser: connection.bytesToClient, protocol: protocolName)
        audit.end(state: state, terminatedBy: actor, reason: reason,
                  bytesIn: connection.bytesFromClient, bytesOut: connection.bytesToClient)
    }
}
