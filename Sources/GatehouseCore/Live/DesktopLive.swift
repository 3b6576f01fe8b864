import Foundation

/// Fan-out of one desktop session's records to live watchers.
///
/// The recorder publishes whole encoded records (the `.gdr` record layout, see
/// docs/desktop-recording.md); the hub keeps the last KEYFRAME and everything since (the
/// backlog), so that a watcher arriving late can draw the current screen at once: it gets the
/// backlog first, then every new batch.
///
/// Sends run on the publishing (or attaching) thread but never under the hub's lock, so a slow
/// `send` cannot stall other watchers' bookkeeping or the recorder's next publish for longer than
/// its own call. Each watcher has its own ordered queue; whichever thread finds it idle drains
/// it, so records always reach a watcher in publish order even when publish and attach race.
public final class DesktopLive: @unchecked Sendable {
    /// Once the backlog since the last keyframe passes this, the hub asks for a fresh keyframe:
    /// a late watcher should not have to download and replay minutes of tiles.
    public static let backlogLimit = 8 << 20

    /// Asks the recorder for a KEYFRAME soon (called outside the lock, at most once per
    /// keyframe). Set by the recorder.
    public var requestKeyframe: (@Sendable () -> Void)? {
        get { lock.withLock { keyframeHandler } }
        set { lock.withLock { keyframeHandler = newValue } }
    }

    private final class Watcher {
        let send: @Sendable (Data) -> Bool
        var pending: [Data] = []
        /// A thread is sending this watcher's queue; others only append.
        var draining = false
        var attached = true
        init(send: @escaping @Sendable (Data) -> Bool) { self.send = send }
    }

    private let lock = NSLock()
    private let headerLine: Data
    private var backlog: [Data] = []
    private var backlogBytes = 0
    private var keyframeRequested = false
    private var keyframeHandler: (@Sendable () -> Void)?
    private var watchers: [Int: Watcher] = [:]
    private var nextToken = 1
    private var ended = false
    /// Type and time of the last record published, to know whether `end` must add an END.
    private var lastType: UInt8?
    private var lastTime: UInt32 = 0

    /// `header`: the JSON header line, without "\n".
    public init(header: Data) {
        self.headerLine = header
    }

    public var header: Data { headerLine }

    public var watcherCount: Int { lock.withLock { watchers.count } }

    public var isEnded: Bool { lock.withLock { ended } }

    /// A watcher gets (on the caller's side of `send`): the last KEYFRAME and every record
    /// since, then new records as published. `send` returns false when the watcher is gone or
    /// too slow; then it is detached. Returns a token for `detach`. After `end`, the watcher
    /// gets the backlog (which closes with END) and is not kept.
    ///
    /// `send` runs on the thread of `attach` (the backlog) and of `publish` (the recorder's
    /// encoder queue), so it must not block: hand the bytes to the connection's own writer
    /// and return false once that one is too far behind. Each message is one or more whole
    /// records; the first starts with a KEYFRAME.
    @discardableResult
    public func attach(_ send: @escaping @Sendable (Data) -> Bool) -> Int {
        let watcher = Watcher(send: send)
        let token: Int = lock.withLock {
            let token = nextToken
            nextToken += 1
            if backlogBytes > 0 { watcher.pending.append(Self.join(backlog, bytes: backlogBytes)) }
            watcher.draining = true
            if ended {
                watcher.attached = false
            } else {
                watchers[token] = watcher
            }
            return token
        }
        drain(watcher, token: token)
        return token
    }

    public func detach(_ token: Int) {
        lock.withLock {
            guard let w = watchers.removeValue(forKey: token) else { return }
            w.attached = false
            w.pending.removeAll()
        }
    }

    /// Called by the recorder with whole encoded records (one or more); `keyframe`: true when
    /// `records` starts with a KEYFRAME (the backlog is reset to it).
    public func publish(_ records: Data, keyframe: Bool) {
        guard !records.isEmpty else { return }
        var ask: (@Sendable () -> Void)?
        let toDrain: [(Int, Watcher)] = lock.withLock {
            guard !ended else { return [] }
            noteLastRecord(in: records)
            if keyframe {
                backlog = [records]
                backlogBytes = records.count
                keyframeRequested = false
            } else {
                backlog.append(records)
                backlogBytes += records.count
                if backlogBytes > Self.backlogLimit, !keyframeRequested, let handler = keyframeHandler {
                    keyframeRequested = true
                    ask = handler
                }
            }
            if lastType == DesktopRecordType.end.rawValue { ended = true }
            return enqueue(records)
        }
        ask?()
        for (token, w) in toDrain { drain(w, token: token) }
        if isEnded { detachAll() }
    }

    /// Sends END to everyone (unless the last record published was already END) and detaches
    /// all. Later publishes are ignored.
    public func end() {
        let toDrain: [(Int, Watcher)] = lock.withLock {
            guard lastType != DesktopRecordType.end.rawValue else {
                ended = true
                return []
            }
            ended = true
            let record = DesktopRecord.end.encoded(time: lastTime)
            lastType = DesktopRecordType.end.rawValue
            backlog.append(record)
            backlogBytes += record.count
            return enqueue(record)
        }
        for (token, w) in toDrain { drain(w, token: token) }
        detachAll()
    }

    // MARK: Internals (lock held where noted)

    /// Lock held. Appends to every watcher's queue; returns those nobody is draining yet
    /// (now marked as drained by the caller).
    private func enqueue(_ data: Data) -> [(Int, Watcher)] {
        var idle: [(Int, Watcher)] = []
        for (token, w) in watchers where w.attached {
            w.pending.append(data)
            if !w.draining {
                w.draining = true
                idle.append((token, w))
            }
        }
        return idle
    }

    /// Sends the watcher's queue in order until it is empty, outside the lock.
    private func drain(_ watcher: Watcher, token: Int) {
        while true {
            let batch: [Data] = lock.withLock {
                let batch = watcher.pending
                watcher.pending.removeAll()
                if batch.isEmpty { watcher.draining = false }
                return batch
            }
            if batch.isEmpty { return }
            for data in batch where !watcher.send(data) {
                lock.withLock {
                    if watchers[token] === watcher { watchers.removeValue(forKey: token) }
                    watcher.attached = false
                    watcher.pending.removeAll()
                    watcher.draining = false
                }
                return
            }
        }
    }

    /// After the end. A watcher still being drained by another thread keeps its queue (which
    /// ends with END) until that thread has sent it.
    private func detachAll() {
        lock.withLock {
            for w in watchers.values { w.attached = false }
            watchers.removeAll()
        }
    }

    /// Lock held. Walks the records' headers for the type and time of the last one.
    private func noteLastRecord(in records: Data) {
        var offset = records.startIndex
        while records.endIndex - offset >= DesktopRecordType.headerSize {
            let length = Int(records.readLE32(at: offset + 1))
            lastType = records[offset]
            lastTime = records.readLE32(at: offset + 5)
            offset += DesktopRecordType.headerSize + length
        }
    }

    private static func join(_ chunks: [Data], bytes: Int) -> Data {
        if chunks.count == 1 { return chunks[0] }
        var out = Data(capacity: bytes)
        for c in chunks { out.append(c) }
        return out
    }
}
