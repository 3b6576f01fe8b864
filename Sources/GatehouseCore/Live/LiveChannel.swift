import Dispatch
import Foundation

/// The live side of one terminal session: what its watchers and joiners see.
///
/// One shared, bounded log of the session's events (output and resizes, as the recording has
/// them) and one cursor per watcher into it. The session appends on its own queue and never
/// waits: a watcher that falls behind the log's window is skipped ahead (it gets the current
/// screen and goes on from there), one that has not read for `stallLimit` is cut loose. Memory
/// is the window, whatever the number of watchers.
public final class LiveChannel: @unchecked Sendable {
    public struct Options: Sendable {
        /// Bytes of events kept for watchers that are a little behind.
        public var window = 1 << 20
        /// A watcher that is behind and has not read for this long is dropped.
        public var stallLimit: TimeInterval = 10
        /// A watcher further behind the session than this gets the current screen instead of
        /// the backlog: nobody reads a flood, and a flood sent to every watcher would cost
        /// the session the CPU it needs.
        public var catchUp = 64 * 1024
        /// Watchers skipped ahead within this long of each other share one screen.
        public var screenReuse: TimeInterval = 0.05
        public init() {}
    }

    /// One thing that happened on the owner's terminal.
    public enum Event: Sendable, Equatable {
        case output([UInt8])
        case resize(columns: Int, rows: Int)
        /// A watcher was skipped ahead (or has just attached): draw this screen, at this size.
        case screen([UInt8], columns: Int, rows: Int)
        /// Someone joined or left; a line for the people in the session.
        case notice(String)
    }

    public struct Stamped: Sendable, Equatable {
        /// Seconds since the session started, as in the recording.
        public var time: Double
        public var event: Event
    }

    public enum Read: Sendable, Equatable {
        case events([Stamped])
        /// Nothing new; the watcher's `wake` runs when there is.
        case nothing
        case ended(String)
    }

    public let sessionID: String
    public let owner: String
    public let asset: String
    public let started: Date
    public let options: Options
    let sessionQueue: DispatchQueue

    private let lock = NSLock()
    private var log: [Stamped] = []
    /// Bytes appended before each log entry, counted since the channel began.
    private var logStarts: [Int] = []
    private var appended = 0
    private var logBytes = 0
    /// The last screen taken, and the log position it stands for.
    private var recentScreen: (seq: Int, stamped: Stamped, taken: DispatchTime)?
    /// Sequence number of `log[0]`.
    private var firstSeq = 0
    private var nextSeq: Int { firstSeq + log.count }
    private var watchers: [Int: LiveWatcher] = [:]
    private var nextWatcherID = 0
    private var endReason: String?
    private var size: (columns: Int, rows: Int)
    private var watcherCount = 0
    private var bytesIn = 0
    private var bytesOut = 0

    /// The owner's screen as it is now; called on the session queue.
    private let screen: () -> [UInt8]
    /// What the session does for its joiners, on its own queue.
    public struct Hooks: @unchecked Sendable { // called on the session queue only
        /// Input typed by a write-mode joiner, and who typed it.
        public var type: ([UInt8], String) -> Void
        /// A line for the owner (someone joined or left).
        public var announce: (String) -> Void
        public init(type: @escaping ([UInt8], String) -> Void, announce: @escaping (String) -> Void) {
            self.type = type
            self.announce = announce
        }
    }
    private let hooks: Hooks

    public init(sessionID: String, owner: String, asset: String, started: Date, columns: Int, rows: Int,
                sessionQueue: DispatchQueue, options: Options = Options(),
                screen: @escaping () -> [UInt8], hooks: Hooks) {
        self.sessionID = sessionID
        self.owner = owner
        self.asset = asset
        self.started = started
        self.sessionQueue = sessionQueue
        self.options = options
        self.size = (columns, rows)
        self.screen = screen
        self.hooks = hooks
    }

    // MARK: The session's side (its queue)

    /// True when anyone watches: the session skips all live work otherwise.
    public var isWatched: Bool { lock.withLock { watcherCount > 0 } }

    public func output(_ bytes: UnsafeRawBufferPointer) {
        let watched = lock.withLock {
            bytesOut += bytes.count
            return watcherCount > 0
        }
        guard watched, bytes.count > 0 else { return }
        append(.output(Array(bytes)), bytes: bytes.count)
    }

    /// Counts what the user sent (for the online sessions' live byte counts).
    public func input(count: Int) {
        lock.withLock { bytesIn += count }
    }

    /// Bytes from the user and to the user so far.
    public var traffic: (in: Int, out: Int) { lock.withLock { (bytesIn, bytesOut) } }

    public func resize(columns: Int, rows: Int) {
        lock.withLock { size = (columns, rows) }
        guard isWatched else { return }
        append(.resize(columns: columns, rows: rows), bytes: 16)
    }

    public func notice(_ text: String) {
        guard isWatched else { return }
        append(.notice(text), bytes: text.utf8.count)
    }

    /// The session is over: every watcher reads what is left, then `reason`.
    public func end(_ reason: String) {
        var stalled: [LiveWatcher] = []
        let wakes: [@Sendable () -> Void] = lock.withLock {
            guard endReason == nil else { return [] }
            endReason = reason
            let now = Date()
            // Nobody reading for a while will not read the end either: let them go now.
            for (id, w) in watchers where !w.armed && now.timeIntervalSince(w.lastRead) > options.stallLimit {
                watchers.removeValue(forKey: id)
                stalled.append(w)
            }
            watcherCount = watchers.count
            return watchers.values.compactMap { $0.takeWake() }
        }
        wakes.forEach { $0() }
        for w in stalled { w.cutLoose("the session ended") }
    }

    private func append(_ event: Event, bytes: Int) {
        let time = Date().timeIntervalSince(started)
        var wakes: [@Sendable () -> Void] = []
        var dropped: [LiveWatcher] = []
        lock.withLock {
            log.append(Stamped(time: time, event: event))
            logStarts.append(appended)
            appended += bytes
            logBytes += bytes
            if logBytes > options.window, log.count > 1 {
                var drop = 0
                while logBytes > options.window, log.count - drop > 1 {
                    logBytes -= Self.weight(log[drop].event)
                    drop += 1
                }
                log.removeFirst(drop)
                logStarts.removeFirst(drop)
                firstSeq += drop
            }
            let now = Date()
            for (id, w) in watchers {
                if w.cursor < firstSeq, now.timeIntervalSince(w.lastRead) > options.stallLimit {
                    watchers.removeValue(forKey: id)
                    watcherCount = watchers.count
                    dropped.append(w)
                } else if let wake = w.takeWake() {
                    // It was waiting, not stalled: its stall clock starts now.
                    w.lastRead = now
                    wakes.append(wake)
                }
            }
        }
        wakes.forEach { $0() }
        for w in dropped { w.cutLoose("too far behind; reconnect to watch again") }
    }

    private static func weight(_ event: Event) -> Int {
        switch event {
        case .output(let b): return b.count
        case .screen(let b, _, _): return b.count
        case .notice(let s): return s.utf8.count
        case .resize: return 16
        }
    }

    // MARK: Watchers' side (any thread)

    /// Adds a watcher. It first reads the current screen, then everything after it.
    /// `wake` is called (on any thread) when a read that returned `.nothing` has news.
    public func attach(name: String, canWrite: Bool = false,
                       wake: @escaping @Sendable () -> Void,
                       cutLoose: @escaping @Sendable (String) -> Void = { _ in }) -> LiveWatcher {
        let watcher = LiveWatcher(channel: self, name: name, canWrite: canWrite, wake: wake, cutLoose: cutLoose)
        lock.withLock {
            watcher.id = nextWatcherID
            nextWatcherID += 1
            watcher.cursor = -1 // behind: the first read brings the screen
            watchers[watcher.id] = watcher
            watcherCount = watchers.count
        }
        return watcher
    }

    func detach(_ watcher: LiveWatcher) {
        lock.withLock {
            watchers.removeValue(forKey: watcher.id)
            watcherCount = watchers.count
        }
    }

    /// The owner's terminal size now.
    public var currentSize: (columns: Int, rows: Int) { lock.withLock { size } }

    public var watcherNames: [String] { lock.withLock { watchers.values.map(\.name).sorted() } }

    /// Reads everything after the watcher's cursor, up to about `limit` bytes of output.
    func read(_ watcher: LiveWatcher, limit: Int) -> Read {
        let resync: Bool = lock.withLock {
            watcher.lastRead = Date()
            guard isBehind(watcher), endReason == nil, !watcher.resyncing, watcher.pendingScreen == nil else { return false }
            return !reuseScreen(for: watcher)
        }
        if resync {
            requestScreen(for: watcher)
            return .nothing
        }
        return lock.withLock {
            if let pending = watcher.pendingScreen {
                watcher.pendingScreen = nil
                return .events([pending])
            }
            if watcher.resyncing || watcher.cursor < firstSeq {
                if let endReason { return .ended(endReason) }
                watcher.armWake()
                return .nothing
            }
            if watcher.cursor < nextSeq {
                var out: [Stamped] = []
                var taken = 0
                while watcher.cursor < nextSeq, taken < limit {
                    let e = log[watcher.cursor - firstSeq]
                    out.append(e)
                    taken += Self.weight(e.event)
                    watcher.cursor += 1
                }
                return .events(out)
            }
            if let endReason { return .ended(endReason) }
            watcher.armWake()
            return .nothing
        }
    }

    /// Out of the window, or further behind than `catchUp`. Under the lock.
    private func isBehind(_ watcher: LiveWatcher) -> Bool {
        if watcher.cursor < firstSeq { return true }
        guard watcher.cursor < nextSeq else { return false }
        return appended - logStarts[watcher.cursor - firstSeq] > options.catchUp
    }

    /// Gives a behind watcher the screen another one got a moment ago, if it is recent and
    /// still in the window. Under the lock; true when done.
    private func reuseScreen(for watcher: LiveWatcher) -> Bool {
        guard let recent = recentScreen, recent.seq >= firstSeq,
              DispatchTime.now().uptimeNanoseconds - recent.taken.uptimeNanoseconds < UInt64(options.screenReuse * 1e9) else { return false }
        watcher.pendingScreen = recent.stamped
        watcher.cursor = recent.seq
        watcher.skips += 1
        return true
    }

    /// Takes the screen on the session's queue, so that it and the cursor agree exactly.
    private func requestScreen(for watcher: LiveWatcher) {
        lock.withLock {
            watcher.resyncing = true
            watcher.armWake()
        }
        sessionQueue.async { [self] in
            let bytes = screen()
            let wake: (@Sendable () -> Void)? = lock.withLock {
                let stamped = Stamped(time: Date().timeIntervalSince(started),
                                      event: .screen(bytes, columns: size.columns, rows: size.rows))
                recentScreen = (nextSeq, stamped, .now())
                watcher.pendingScreen = stamped
                watcher.cursor = nextSeq
                watcher.resyncing = false
                watcher.skips += 1
                return watcher.takeWake()
            }
            wake?()
        }
    }

    func type(_ bytes: [UInt8], by watcher: LiveWatcher) {
        guard watcher.canWrite, !bytes.isEmpty else { return }
        let name = watcher.name
        sessionQueue.async { [hooks] in hooks.type(bytes, name) }
    }

    /// Tells the owner (and, through the log, every watcher) something, e.g. who joined.
    public func announce(_ text: String) {
        sessionQueue.async { [self] in
            hooks.announce(text)
            notice(text)
        }
    }
}

/// One watcher's cursor into a `LiveChannel`.
public final class LiveWatcher: @unchecked Sendable {
    public let name: String
    public let canWrite: Bool
    unowned let channel: LiveChannel
    // Guarded by the channel's lock.
    var id = 0
    var cursor = 0
    var lastRead = Date()
    var resyncing = false
    var pendingScreen: LiveChannel.Stamped?
    var armed = false
    /// How many times this watcher was brought up to date with a fresh screen (the first
    /// attach counts once).
    public internal(set) var skips = 0
    private let wake: @Sendable () -> Void
    private let onCutLoose: @Sendable (String) -> Void

    init(channel: LiveChannel, name: String, canWrite: Bool, wake: @escaping @Sendable () -> Void,
         cutLoose: @escaping @Sendable (String) -> Void) {
        self.channel = channel
        self.name = name
        self.canWrite = canWrite
        self.wake = wake
        self.onCutLoose = cutLoose
    }

    func armWake() { armed = true }

    func takeWake() -> (@Sendable () -> Void)? {
        guard armed else { return nil }
        armed = false
        return wake
    }

    func cutLoose(_ reason: String) { onCutLoose(reason) }

    public var session: LiveChannel { channel }

    /// Events after this watcher's cursor, at most about `limit` bytes; `.nothing` arms a wake.
    public func read(limit: Int = 256 * 1024) -> LiveChannel.Read { channel.read(self, limit: limit) }

    /// Input from a write-mode joiner; ignored for read-only watchers.
    public func type(_ bytes: [UInt8]) { channel.type(bytes, by: self) }

    public func detach() { channel.detach(self) }
}
