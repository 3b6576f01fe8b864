import Dispatch
import Foundation
import Logging

/// Recording settings from the `recording:` part of the config.
public struct RecordingPolicy: Sendable {
    public enum OnFailure: String, Sendable { case terminate, `continue` }
    /// Terminal recording on or off (rows and activities are always kept). Off is for
    /// measuring what recording costs; a bastion leaves it on.
    public var enabled = true
    public var flushInterval: TimeInterval = 1
    public var recordInput = false
    public var onFailure: OnFailure = .terminate
    /// Recordings older than this are deleted by the daily sweep; nil keeps them forever.
    public var retentionDays: Int?
    public init() {}
}

/// The audit trail of a node: the session store and the recordings directory. Protocols open
/// an `AuditSession` per session; admin commands read the store directly.
public final class AuditTrail: @unchecked Sendable {
    public let store: SessionStore
    public let recordingsDirectory: String
    public let policy: RecordingPolicy
    let logger: Logger
    /// Store writes are small and ordered; they never run on a session's queue.
    let storeQueue = DispatchQueue(label: "gatehouse.store")

    public init(dataDirectory: String, policy: RecordingPolicy, logger: Logger) throws {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        store = try SQLiteSessionStore(path: dataDirectory + "/gatehouse.sqlite")
        recordingsDirectory = dataDirectory + "/recordings"
        self.policy = policy
        self.logger = logger
    }

    public func recordingPath(_ relative: String) -> String { recordingsDirectory + "/" + relative }

    /// Writes a store change in order, off the caller's queue; a failure is logged loudly.
    func write(_ what: String, _ body: @escaping @Sendable (SessionStore) throws -> Void) {
        storeQueue.async { [store, logger] in
            do { try body(store) } catch { logger.error("audit store write failed (\(what)): \(error)") }
        }
    }

    /// Sessions whose recordings are still being closed and compressed; a protocol with its
    /// own recorder enters it while closing one.
    public let closing = DispatchGroup()

    /// Blocks until every session that has ended is fully written (recording closed, row
    /// updated), or `timeout` passes. Shutdown calls it so that a drained gateway leaves
    /// nothing for the next start to mark interrupted.
    public func waitForWrites(timeout: TimeInterval = 30) {
        _ = closing.wait(timeout: .now() + timeout)
        storeQueue.sync {}
    }

    public func begin(_ record: SessionRecord, activities: [Activity]) -> AuditSession {
        let session = AuditSession(trail: self, record: record)
        write("session start") { store in
            try store.insert(record)
            for a in activities { try store.addActivity(sessionID: record.id, a) }
        }
        return session
    }

    /// A session that never reached its asset: kept so auditors see refused attempts.
    public func recordFailed(_ record: SessionRecord, activities: [Activity], commands: [CommandRecord] = []) {
        var failed = record
        failed.state = .failed
        failed.ended = failed.ended ?? Date()
        let r = failed
        write("failed session") { store in
            try store.insert(r)
            for a in activities { try store.addActivity(sessionID: r.id, a) }
            for c in commands { try store.addCommand(c) }
        }
    }

    /// At start-up: sessions left online by a gateway that stopped are marked interrupted,
    /// their recordings cut at the last whole event and compressed. Returns how many.
    @discardableResult
    public func recoverInterruptedSessions() throws -> Int {
        let stale = try store.onlineSessions()
        for var record in stale {
            var ended = record.started
            if let relative = record.recording, relative.hasSuffix(".gdr") {
                // Desktop recordings are appended record by record and read up to a torn
                // tail as they are; the file's modification time is the last write.
                if let modified = (try? FileManager.default.attributesOfItem(atPath: recordingPath(relative)))?[.modificationDate] as? Date,
                   modified > record.started {
                    ended = modified
                }
            } else if let relative = record.recording {
                let path = recordingPath(relative)
                if let (lastTime, _) = Self.truncateToLastWholeEvent(path) {
                    ended = record.started.addingTimeInterval(lastTime)
                }
                if FileManager.default.fileExists(atPath: path), (try? Gzip.compressFile(path, to: path + ".gz")) != nil {
                    unlink(path)
                    RecordingIndex.removeIndex(forRecording: path)
                    record.recording = relative + ".gz"
                }
            }
            record.state = .interrupted
            record.ended = ended
            record.reason = "the gateway stopped while the session was online"
            try store.update(record)
            try store.addActivity(sessionID: record.id, Activity(.disconnected, "interrupted: the gateway stopped while the session was online", time: ended))
            logger.warning("session marked interrupted", metadata: ["session": "\(record.shortID)", "user": "\(record.user)", "asset": "\(record.asset)"])
        }
        return stale.count
    }

    /// Cuts a torn last line off a recording; returns the time of its last whole event.
    static func truncateToLastWholeEvent(_ path: String) -> (Double, Int)? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        guard let lastNewline = data.lastIndex(of: 0x0A) else { return nil }
        let keep = lastNewline + 1
        if keep < data.count { _ = truncate(path, off_t(keep)) }
        var lastTime = 0.0
        let body = data[..<keep]
        if let previousNewline = body.dropLast().lastIndex(of: 0x0A) {
            let line = Array(body[(previousNewline + 1)..<lastNewline])
            lastTime = AsciicastReader.parseEvent(line)?.time ?? 0
        }
        return (lastTime, keep)
    }

    /// Deletes recordings past `retention_days` and marks their rows. Returns how many.
    @discardableResult
    public func sweepRetention(now: Date = Date()) throws -> Int {
        guard let days = policy.retentionDays else { return 0 }
        let cutoff = now.addingTimeInterval(-Double(days) * 86400)
        var count = 0
        for var record in try store.sessionsWithRecordings(startedBefore: cutoff) {
            if let relative = record.recording {
                unlink(recordingPath(relative))
                RecordingIndex.removeIndex(forRecording: recordingPath(relative))
            }
            record.recording = nil
            try store.update(record)
            try store.addActivity(sessionID: record.id, Activity(.recordingDeleted, "recording deleted after \(days) days (retention)"))
            count += 1
        }
        return count
    }
}

/// The audit side of one live session: its row, its activities and its recorder.
public final class AuditSession: @unchecked Sendable {
    public let trail: AuditTrail
    public private(set) var record: SessionRecord
    public var recorder: TerminalRecorder?
    private var ended = false

    init(trail: AuditTrail, record: SessionRecord) {
        self.trail = trail
        self.record = record
    }

    public var id: String { record.id }

    public func activity(_ activity: Activity) {
        let id = record.id
        trail.write("activity") { try $0.addActivity(sessionID: id, activity) }
    }

    public func transfer(_ transfer: TransferRecord) {
        trail.write("transfer") { try $0.addTransfer(transfer) }
    }

    public func command(_ command: CommandRecord) {
        trail.write("command") { try $0.addCommand(command) }
    }

    /// Starts the terminal recording; on failure the session gets no recorder and the caller
    /// decides (policy) whether it may go on.
    public func startRecording(width: Int, height: Int, term: String?, sessionQueue: DispatchQueue,
                               onFailure: @escaping @Sendable (String) -> Void, onDrain: @escaping @Sendable () -> Void) throws {
        guard trail.policy.enabled else { return }
        let day = ISO8601DateFormatter.string(from: record.started, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
        let relative = "\(day)/\(record.id).cast"
        var options = TerminalRecorder.Options()
        options.flushInterval = trail.policy.flushInterval
        options.recordInput = trail.policy.recordInput
        recorder = try TerminalRecorder(path: trail.recordingPath(relative), width: width, height: height, term: term,
                                        title: "\(record.user)@\(record.asset)", options: options,
                                        sessionQueue: sessionQueue, onFailure: onFailure, onDrain: onDrain)
        record.recording = relative
        let snapshot = record
        trail.write("recording path") { try $0.update(snapshot) }
    }

    /// Records where a recording made by the protocol itself (a desktop recording) lives.
    public func setRecording(_ relative: String) {
        record.recording = relative
        let snapshot = record
        trail.write("recording path") { try $0.update(snapshot) }
    }

    /// Ends the session: closes the recording (compressed), writes the final row.
    public func end(state: SessionState, terminatedBy: String? = nil, reason: String, bytesIn: Int, bytesOut: Int) {
        guard !ended else { return }
        ended = true
        record.state = state
        record.ended = Date()
        record.terminatedBy = terminatedBy
        record.reason = reason
        record.bytesIn = bytesIn
        record.bytesOut = bytesOut
        let kind: Activity.Kind = state == .terminated ? .terminated : .disconnected
        activity(Activity(kind, terminatedBy.map { "\(reason) (by \($0))" } ?? reason))
        let finalRecord = record
        let trail = self.trail
        guard let recorder else {
            trail.write("session end") { try $0.update(finalRecord) }
            return
        }
        let recordingsDirectory = trail.recordingsDirectory
        trail.closing.enter()
        recorder.close { result in
            var r = finalRecord
            switch result {
            case .success(let path):
                r.recording = String(path.dropFirst(recordingsDirectory.count + 1))
            case .failure(let error):
                trail.logger.error("recording incomplete", metadata: ["session": "\(r.shortID)", "error": "\(error)"])
                let id = r.id
                trail.write("recording gap") { try $0.addActivity(sessionID: id, Activity(.recordingGap, "recording incomplete: \(error)")) }
            }
            let done = r
            trail.write("session end") { try $0.update(done) }
            trail.closing.leave()
        }
    }
}
