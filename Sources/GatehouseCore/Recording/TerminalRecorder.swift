import Dispatch
import Foundation

/// Writes one terminal channel's asciicast recording.
///
/// Called on the session's queue, where events are encoded into a pending buffer; the buffer
/// is handed to a writer queue when it grows past `chunkSize` or every `flushInterval`, so a
/// crash loses at most that interval. The bytes handed over but not yet written are counted:
/// past `maxBacklog` the recorder reports `isBackedUp` and the relay stops reading from the
/// asset until the disk catches up. It never drops data to keep up.
public final class TerminalRecorder: @unchecked Sendable {
    public struct Options: Sendable {
        public var flushInterval: TimeInterval = 1
        public var recordInput = false
        public var chunkSize = 256 * 1024
        public var maxBacklog = 16 * 1024 * 1024
        public init() {}
    }

    public let path: String
    public let options: Options
    private let sessionQueue: DispatchQueue
    private let writer: DispatchQueue
    private let fd: Int32
    private let start: DispatchTime
    private var encoder = AsciicastEncoder()
    private var pending: [UInt8] = []
    private var timer: DispatchSourceTimer?
    private var closed = false
    private let lock = NSLock()
    private var backlog = 0
    /// Since when some bytes have been waiting for the disk (nil: none wait).
    private var behindSince: DispatchTime?
    private var failure: String?
    private let onFailure: @Sendable (String) -> Void
    private let onDrain: @Sendable () -> Void

    /// Shared by all recorders: writes of different sessions run in parallel, each
    /// recorder's writes in order.
    private static let writers = DispatchQueue(label: "gatehouse.recorder", qos: .utility, attributes: .concurrent)

    public init(path: String, width: Int, height: Int, term: String?, title: String, options: Options,
                sessionQueue: DispatchQueue, onFailure: @escaping @Sendable (String) -> Void,
                onDrain: @escaping @Sendable () -> Void) throws {
        self.path = path
        self.options = options
        self.sessionQueue = sessionQueue
        self.onFailure = onFailure
        self.onDrain = onDrain
        writer = DispatchQueue(label: "gatehouse.recorder.file", target: Self.writers)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RecorderError.cannotOpen(path, String(cString: strerror(errno))) }
        start = .now()
        pending = AsciicastEncoder.header(width: width, height: height, timestamp: Int(Date().timeIntervalSince1970),
                                          term: term, title: title)
        submit() // the header reaches the disk at once: a recording file is never empty
        let timer = DispatchSource.makeTimerSource(queue: sessionQueue)
        timer.schedule(deadline: .now() + options.flushInterval, repeating: options.flushInterval, leeway: .milliseconds(100))
        timer.setEventHandler { [weak self] in self?.submit() }
        timer.activate()
        self.timer = timer
    }

    public enum RecorderError: Error, CustomStringConvertible {
        case cannotOpen(String, String)
        public var description: String {
            switch self { case let .cannotOpen(p, why): return "cannot create recording \(p): \(why)" }
        }
    }

    private var now: Double { Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9 }

    /// True while more than `maxBacklog` bytes wait for the disk.
    public var isBackedUp: Bool { lock.withLock { backlog > options.maxBacklog } }

    public var hasFailed: Bool { lock.withLock { failure != nil } }

    /// Bytes handed to the writer and not yet on disk, and for how long the disk has been behind.
    public var queue: (bytes: Int, lag: Double) {
        lock.withLock {
            (backlog, behindSince.map { Double(DispatchTime.now().uptimeNanoseconds - $0.uptimeNanoseconds) / 1e9 } ?? 0)
        }
    }

    public func output(_ bytes: UnsafeRawBufferPointer) {
        guard !closed, bytes.count > 0 else { return }
        encoder.output(bytes, at: now, to: &pending)
        if pending.count >= options.chunkSize { submit() }
    }

    public func input(_ bytes: UnsafeRawBufferPointer) {
        guard !closed, options.recordInput, bytes.count > 0 else { return }
        encoder.input(bytes, at: now, to: &pending)
        if pending.count >= options.chunkSize { submit() }
    }

    public func resize(columns: Int, rows: Int) {
        guard !closed else { return }
        encoder.resize(columns: columns, rows: rows, at: now, to: &pending)
    }

    /// A marker (`"m"`), e.g. a command boundary; returns its time offset.
    @discardableResult
    public func marker(_ label: String) -> Double {
        let t = now
        guard !closed else { return t }
        encoder.marker(label, at: t, to: &pending)
        return t
    }

    private func submit() {
        guard !pending.isEmpty else { return }
        let chunk = pending
        pending = []
        pending.reserveCapacity(options.chunkSize)
        lock.withLock {
            if backlog == 0 { behindSince = .now() }
            backlog += chunk.count
        }
        writer.async { [self] in
            let wasBackedUp = isBackedUp
            if lock.withLock({ failure == nil }) {
                if let error = writeAll(chunk) {
                    lock.withLock { failure = error }
                    let message = "cannot write recording \(path): \(error)"
                    sessionQueue.async { self.onFailure(message) }
                }
            }
            lock.withLock {
                backlog -= chunk.count
                if backlog == 0 { behindSince = nil }
            }
            if wasBackedUp && !isBackedUp { sessionQueue.async { self.onDrain() } }
        }
    }

    private func writeAll(_ chunk: [UInt8]) -> String? {
        chunk.withUnsafeBytes { raw -> String? in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return String(cString: strerror(errno))
                }
                offset += n
            }
            return nil
        }
    }

    /// Hands over what is pending and waits for the writer to take it; returns the write error,
    /// if any. Called when a session ends normally, so that a disk that failed in the last
    /// moments is noticed before the user is told all went well.
    public func drain() -> String? {
        guard !closed else { return lock.withLock { failure } }
        submit()
        writer.sync {}
        return lock.withLock { failure }
    }

    /// Ends the event stream: held bytes written out, the last batch handed to the writer, the
    /// flush timer stopped. False when it had already ended.
    private func stopRecording() -> Bool {
        guard !closed else { return false }
        encoder.finish(at: now, to: &pending)
        submit()
        closed = true
        timer?.cancel()
        timer = nil
        return true
    }

    /// Writes what is left, fsyncs and closes, leaving the plain `.cast` (benchmarks; tools).
    public func closeWithoutCompressing(_ completion: @escaping @Sendable () -> Void) {
        guard stopRecording() else { return }
        writer.async { [self] in
            _ = fsync(fd)
            Foundation.close(fd)
            completion()
        }
    }

    /// Writes what is left, fsyncs, closes and compresses to `.cast.gz`. `completion` runs on
    /// the writer with the final path, or an error (then the plain `.cast` is kept).
    public func close(completion: @escaping @Sendable (Result<String, Error>) -> Void) {
        guard stopRecording() else { return }
        writer.async { [self] in
            let failed = lock.withLock { failure }
            let synced = fsync(fd) == 0
            Foundation.close(fd)
            if let failed {
                completion(.failure(Gzip.Failure.io(failed)))
                return
            }
            guard synced else {
                completion(.failure(Gzip.Failure.io("fsync failed for \(path)")))
                return
            }
            // Compression is slow, CPU-bound work: it runs on its own low-priority thread,
            // never on the threads that carry sessions.
            WorkerThreads.compression.submit { [path] in
                do {
                    try Gzip.compressFile(path, to: path + ".gz")
                    unlink(path)
                    RecordingIndex.removeIndex(forRecording: path)
                    // Index it now, on this background queue, so the first replay starts at once.
                    _ = try? RecordingIndex.loadOrBuild(recording: path + ".gz")
                    completion(.success(path + ".gz"))
                } catch {
                    completion(.success(path))
                }
            }
        }
    }
}
