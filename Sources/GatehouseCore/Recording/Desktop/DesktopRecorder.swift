import Dispatch
import Foundation

/// Records one desktop (RDP) session into a `.gdr` file and feeds its live hub.
///
/// Three parties, three places:
/// - the capture thread calls `frame`, which only copies the dirty rectangles into `incoming`
///   (the latest screen, BGRX as captured) and marks their 64×64 cells, under `lock`: the
///   capture never waits for compression or the disk;
/// - the encoder queue, at most about 12 times a second, takes the marked cells, compares them
///   with `screen` (what the recording shows so far, RGBA) and encodes the changed ones as
///   tiles, and writes keyframes;
/// - the writer queue appends the encoded bytes to the file.
///
/// Changed pixels only: a dirty rectangle whose pixels are what the recording already shows
/// costs a comparison and no bytes.
public final class DesktopRecorder: @unchecked Sendable {
    public struct Rect: Sendable, Equatable {
        public var x, y, width, height: Int
        public init(x: Int, y: Int, width: Int, height: Int) {
            self.x = x
            self.y = y
            self.width = width
            self.height = height
        }
    }

    public enum RecorderError: Error, CustomStringConvertible {
        case cannotOpen(String, String)
        case writeFailed(String)
        public var description: String {
            switch self {
            case let .cannotOpen(p, why): return "cannot create desktop recording \(p): \(why)"
            case .writeFailed(let why): return why
            }
        }
    }

    /// Side of the comparison cells, in pixels.
    public static let cellSize = 64
    /// Tiles are encoded at most this often: a screen that redraws continuously (video) would
    /// otherwise cost a tile set per captured frame.
    public static let minimumTileInterval: TimeInterval = 1.0 / 12
    /// Encoded bytes gathered before they are handed to the writer (besides the periodic flush).
    static let writeChunk = 256 * 1024

    public let path: String
    private let started: Date
    private let startUptime: DispatchTime
    private let keyframeInterval: TimeInterval
    private let live: DesktopLive?
    private let onFailure: @Sendable (String) -> Void
    private let fd: Int32
    private let queue = DispatchQueue(label: "gatehouse.desktop.encoder", qos: .utility)
    private let writer: DispatchQueue

    /// Shared by all desktop recorders: writes of different sessions run in parallel, each
    /// recorder's writes in order.
    private static let writers = DispatchQueue(label: "gatehouse.desktop.writer", qos: .utility, attributes: .concurrent)

    // MARK: Capture side: under `lock`

    private let lock = NSLock()
    /// The latest captured screen, BGRX as captured (one UInt32 per pixel).
    private var incoming: [UInt32]
    private var incomingWidth: Int
    private var incomingHeight: Int
    /// Cells of `incoming` touched since the encoder last looked.
    private var dirtyCells: CellGrid
    private var pendingPointer: (x: Int, y: Int)?
    private var pendingEvents: [(time: UInt32, json: Data)] = []
    private var flushScheduled = false
    private var lastFlush: DispatchTime = .now()
    private var closed = false
    private var queued = 0
    private var written = 0
    private var failure: String?
    private var closeResult: Result<String, Error>?

    // MARK: Encoder side: only on `queue`

    /// What the recording shows, RGBA (one UInt32 per pixel, bytes R, G, B, A).
    private var screen: [UInt32]
    private var screenWidth: Int
    private var screenHeight: Int
    /// Scratch copy of the dirty cells of `incoming`, taken under the lock and compared outside it.
    private var staged: [UInt32]
    private var lastTime: UInt32 = 0
    private var lastKeyframe: Double = 0
    private var changedSinceKeyframe = false
    private var writeBuffer = Data()
    private var timer: DispatchSourceTimer?
    private var closing = false

    /// The header line (without "\n") a recorder with these values writes; for the live hub,
    /// which is created first: `DesktopLive(header: DesktopRecorder.header(...))`.
    public static func header(width: Int, height: Int, title: String, started: Date) -> Data {
        DesktopHeader(width: width, height: height, timestamp: Int(started.timeIntervalSince1970.rounded(.down)),
                      title: title).encoded()
    }

    /// Creates the parent directory (0700) and the file (0600, never overwriting one), and
    /// writes the header and a black KEYFRAME at once, so a recording file is never empty.
    /// Times in the records are milliseconds since `started`.
    public init(path: String, width: Int, height: Int, title: String, started: Date, live: DesktopLive?,
                keyframeInterval: TimeInterval = 10, onFailure: @escaping @Sendable (String) -> Void) throws {
        let width = Self.clampSize(width), height = Self.clampSize(height)
        guard width * height <= DesktopCanvas.maxPixels else {
            throw RecorderError.cannotOpen(path, "screen size \(width)x\(height) too large")
        }
        self.path = path
        self.started = started
        self.keyframeInterval = max(0.01, keyframeInterval)
        self.live = live
        self.onFailure = onFailure
        writer = DispatchQueue(label: "gatehouse.desktop.file", target: Self.writers)
        incoming = Self.blackBGRX(width * height)
        incomingWidth = width
        incomingHeight = height
        dirtyCells = CellGrid(width: width, height: height)
        screen = Self.blackRGBA(width * height)
        screenWidth = width
        screenHeight = height
        staged = incoming

        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw RecorderError.cannotOpen(path, "\(error.localizedDescription)")
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RecorderError.cannotOpen(path, String(cString: strerror(errno))) }
        startUptime = .now()

        var first = Self.header(width: width, height: height, title: title, started: started)
        first.append(UInt8(ascii: "\n"))
        let keyframe = Self.keyframeRecord(screen, width: width, height: height, time: 0)
        first.append(keyframe)
        if let error = Self.writeAll(fd, first) {
            Foundation.close(fd)
            unlink(path)
            throw RecorderError.cannotOpen(path, error)
        }
        written = first.count
        live?.publish(keyframe, keyframe: true)

        live?.requestKeyframe = { [weak self] in self?.keyframeRequested() }
        let tick = min(1.0, max(0.02, self.keyframeInterval / 4))
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + tick, repeating: tick, leeway: .milliseconds(10))
        timer.setEventHandler { [weak self] in self?.tick() }
        timer.activate()
        self.timer = timer
    }

    deinit {
        timer?.cancel()
        // Never closed: at least do not leak the descriptor (what was written stays).
        if !closing { Foundation.close(fd) }
    }

    // MARK: Capture thread

    /// On the capture thread: BGRA32 pixels (B, G, R, X byte order, alpha ignored), `stride`
    /// bytes per row. Copies the dirty rects into its own screen copy before returning;
    /// compares, encodes and writes on its own serial queue. A frame of another size than the
    /// current screen resizes the recording first (RESIZE) and is taken whole.
    public func frame(bgra: UnsafeRawPointer, stride: Int, width: Int, height: Int, dirty: [Rect]) {
        guard width > 0, height > 0, stride >= width * 4, width * height <= DesktopCanvas.maxPixels else { return }
        lock.withLock {
            guard !closed else { return }
            var rects = dirty
            if width != incomingWidth || height != incomingHeight {
                resizeLocked(width: width, height: height)
                rects = [Rect(x: 0, y: 0, width: width, height: height)]
            }
            incoming.withUnsafeMutableBytes { dst in
                guard let base = dst.baseAddress else { return }
                for rect in rects {
                    let x0 = max(0, rect.x), y0 = max(0, rect.y)
                    let x1 = min(width, rect.x + max(0, rect.width)), y1 = min(height, rect.y + max(0, rect.height))
                    guard x1 > x0, y1 > y0 else { continue }
                    let rowBytes = (x1 - x0) * 4
                    for y in y0..<y1 {
                        (base + (y * width + x0) * 4).copyMemory(from: bgra + y * stride + x0 * 4, byteCount: rowBytes)
                    }
                    dirtyCells.mark(x0: x0, y0: y0, x1: x1, y1: y1)
                }
            }
            scheduleFlushLocked()
        }
    }

    /// RESIZE record; the screen becomes that size, black. A size no player could draw
    /// (over `DesktopCanvas.maxPixels`) is ignored.
    public func resize(width: Int, height: Int) {
        let width = Self.clampSize(width), height = Self.clampSize(height)
        guard width * height <= DesktopCanvas.maxPixels else { return }
        lock.withLock {
            guard !closed else { return }
            resizeLocked(width: width, height: height)
        }
    }

    /// Where the user's mouse is; only the latest position per tile interval is recorded.
    public func pointer(x: Int, y: Int) {
        lock.withLock {
            guard !closed else { return }
            pendingPointer = (max(0, x), max(0, y))
            scheduleFlushLocked()
        }
    }

    /// EVENT record (a JSON object of the fields), at the time of the call.
    public func event(_ fields: [String: String]) {
        guard case .event(let json) = DesktopRecord.event(fields) else { return }
        let time = timeNow()
        lock.withLock {
            guard !closed else { return }
            pendingEvents.append((time, json))
            scheduleFlushLocked()
        }
    }

    /// Encoded bytes waiting to be written.
    public var queuedBytes: Int { lock.withLock { queued } }

    /// Bytes in the file so far.
    public var bytesWritten: Int { lock.withLock { written } }

    /// Writes END, flushes, fsyncs, closes; completion gets the path or the error (on the
    /// writer queue). Idempotent: later calls get the same result.
    public func close(completion: @escaping @Sendable (Result<String, Error>) -> Void) {
        lock.withLock { closed = true }
        queue.async { [self] in
            if !closing {
                closing = true
                timer?.cancel()
                timer = nil
                encodePending(forceKeyframe: false)
                emit(DesktopRecord.end.encoded(time: nextTime()), keyframe: false)
                live?.end()
                live?.requestKeyframe = nil
                submitWrites()
                writer.async { [self] in finishFile() }
            }
            writer.async { [self] in
                let result = lock.withLock { closeResult } ?? .failure(RecorderError.writeFailed("recording \(path) not closed"))
                completion(result)
            }
        }
    }

    // MARK: Lock held

    /// Hands the old screen's pending changes to the encoder, to be recorded before the RESIZE,
    /// and starts a black screen of the new size.
    private func resizeLocked(width: Int, height: Int) {
        let old = (pixels: incoming, width: incomingWidth, height: incomingHeight, cells: dirtyCells)
        incoming = Self.blackBGRX(width * height)
        incomingWidth = width
        incomingHeight = height
        dirtyCells = CellGrid(width: width, height: height)
        let events = pendingEvents
        let pointer = pendingPointer
        pendingEvents = []
        pendingPointer = nil
        queue.async { [self] in
            guard !closing else { return }
            var batch = Data()
            appendEvents(events, pointer: pointer, to: &batch)
            if !old.cells.isEmpty, old.width == screenWidth, old.height == screenHeight {
                old.pixels.withUnsafeBufferPointer { source in
                    appendTiles(from: source, cells: old.cells, to: &batch)
                }
            }
            DesktopRecord.resize(width: width, height: height).append(to: &batch, time: nextTime())
            screen = Self.blackRGBA(width * height)
            screenWidth = width
            screenHeight = height
            staged = Self.blackBGRX(width * height)
            changedSinceKeyframe = true
            emit(batch, keyframe: false)
        }
    }

    private func scheduleFlushLocked() {
        guard !flushScheduled else { return }
        flushScheduled = true
        let due = lastFlush.uptimeNanoseconds + UInt64(Self.minimumTileInterval * 1e9)
        let now = DispatchTime.now().uptimeNanoseconds
        let deadline: DispatchTime = due > now ? DispatchTime(uptimeNanoseconds: due) : .now()
        queue.asyncAfter(deadline: deadline) { [weak self] in self?.flush() }
    }

    // MARK: Encoder queue

    private func flush() {
        guard !closing else { return }
        encodePending(forceKeyframe: false)
    }

    private func tick() {
        guard !closing else { return }
        if changedSinceKeyframe, elapsed() - lastKeyframe >= keyframeInterval {
            encodePending(forceKeyframe: true)
        }
        submitWrites()
    }

    private func keyframeRequested() {
        queue.async { [self] in
            guard !closing else { return }
            encodePending(forceKeyframe: true)
        }
    }

    /// Takes what the capture side gathered and records it: events and pointer, then tiles for
    /// changed cells, or a KEYFRAME instead when one is due (or forced).
    private func encodePending(forceKeyframe: Bool) {
        let taken: (cells: CellGrid, events: [(time: UInt32, json: Data)], pointer: (x: Int, y: Int)?) = lock.withLock {
            flushScheduled = false
            lastFlush = .now()
            let events = pendingEvents
            pendingEvents = []
            let pointer = pendingPointer
            pendingPointer = nil
            // The capture side resized and the encoder has not yet: its RESIZE job is queued
            // ahead of us. Leave the cells for a flush after it.
            guard incomingWidth == screenWidth, incomingHeight == screenHeight else {
                if !dirtyCells.isEmpty { scheduleFlushLocked() }
                return (CellGrid(width: 0, height: 0), events, pointer)
            }
            let cells = dirtyCells
            dirtyCells.clear()
            if !cells.isEmpty {
                copyCells(cells, from: incoming, to: &staged, width: incomingWidth, height: incomingHeight)
            }
            return (cells, events, pointer)
        }
        var batch = Data()
        appendEvents(taken.events, pointer: taken.pointer, to: &batch)
        let keyframeDue = forceKeyframe
            || ((changedSinceKeyframe || !taken.cells.isEmpty) && elapsed() - lastKeyframe >= keyframeInterval)
        if keyframeDue {
            var changed = false
            if !taken.cells.isEmpty {
                staged.withUnsafeBufferPointer { source in
                    changed = updateScreen(from: source, cells: taken.cells).contains(true)
                }
            }
            if !batch.isEmpty { emit(batch, keyframe: false) }
            if forceKeyframe || changed || changedSinceKeyframe {
                writeKeyframe()
            }
        } else {
            if !taken.cells.isEmpty {
                staged.withUnsafeBufferPointer { source in
                    appendTiles(from: source, cells: taken.cells, to: &batch)
                }
            }
            if !batch.isEmpty { emit(batch, keyframe: false) }
        }
    }

    private func writeKeyframe() {
        let time = nextTime()
        let record = Self.keyframeRecord(screen, width: screenWidth, height: screenHeight, time: time)
        lastKeyframe = elapsed()
        changedSinceKeyframe = false
        emit(record, keyframe: true)
    }

    private func appendEvents(_ events: [(time: UInt32, json: Data)], pointer: (x: Int, y: Int)?, to batch: inout Data) {
        for e in events {
            lastTime = max(lastTime, e.time)
            DesktopRecord.event(e.json).append(to: &batch, time: lastTime)
        }
        if let p = pointer {
            DesktopRecord.pointer(x: p.x, y: p.y).append(to: &batch, time: nextTime())
        }
    }

    /// Brings `screen` up to date from `source` (BGRX, screen-sized) in the given cells and
    /// appends a TILE for each run of adjacent changed cells in a cell row.
    private func appendTiles(from source: UnsafeBufferPointer<UInt32>, cells: CellGrid, to batch: inout Data) {
        let changed = updateScreen(from: source, cells: cells)
        guard changed.contains(true) else { return }
        changedSinceKeyframe = true
        let time = nextTime()
        let size = Self.cellSize
        var scratch: [UInt32] = []
        for row in 0..<cells.rows {
            var column = 0
            while column < cells.columns {
                guard changed[row * cells.columns + column] else {
                    column += 1
                    continue
                }
                let first = column
                while column < cells.columns, changed[row * cells.columns + column] { column += 1 }
                let x0 = first * size, x1 = min(screenWidth, column * size)
                let y0 = row * size, y1 = min(screenHeight, y0 + size)
                let w = x1 - x0, h = y1 - y0
                scratch.removeAll(keepingCapacity: true)
                scratch.reserveCapacity(w * h)
                for y in y0..<y1 {
                    scratch.append(contentsOf: screen[(y * screenWidth + x0)..<(y * screenWidth + x1)])
                }
                let tile = scratch.withUnsafeBytes { DesktopTile(x: x0, y: y0, width: w, height: h, rgba: $0) }
                DesktopRecord.tile(tile).append(to: &batch, time: time)
            }
        }
    }

    /// Converts the given cells of `source` into `screen`; returns, per cell, whether any pixel
    /// differed.
    private func updateScreen(from source: UnsafeBufferPointer<UInt32>, cells: CellGrid) -> [Bool] {
        var changed = [Bool](repeating: false, count: cells.columns * cells.rows)
        let width = screenWidth, height = screenHeight
        guard source.count >= width * height else { return changed }
        let size = Self.cellSize
        screen.withUnsafeMutableBufferPointer { dst in
            for index in cells.marked {
                let cx = index % cells.columns, cy = index / cells.columns
                let x0 = cx * size, x1 = min(width, x0 + size)
                let y0 = cy * size, y1 = min(height, y0 + size)
                var differs = false
                for y in y0..<y1 {
                    var i = y * width + x0
                    let end = y * width + x1
                    while i < end {
                        let rgba = Self.rgba(fromBGRX: source[i])
                        if dst[i] != rgba {
                            dst[i] = rgba
                            differs = true
                        }
                        i += 1
                    }
                }
                changed[index] = differs
            }
        }
        return changed
    }

    /// Appends encoded records to the file's buffer and publishes them.
    private func emit(_ batch: Data, keyframe: Bool) {
        guard !batch.isEmpty else { return }
        writeBuffer.append(batch)
        lock.withLock { queued += batch.count }
        live?.publish(batch, keyframe: keyframe)
        if writeBuffer.count >= Self.writeChunk { submitWrites() }
    }

    private func submitWrites() {
        guard !writeBuffer.isEmpty else { return }
        let chunk = writeBuffer
        writeBuffer = Data()
        writer.async { [self] in
            let failedBefore = lock.withLock { failure != nil }
            var error: String?
            if !failedBefore { error = Self.writeAll(fd, chunk) }
            lock.withLock {
                queued -= chunk.count
                if failedBefore { return }
                if let error {
                    failure = "cannot write desktop recording \(path): \(error); recording stopped, what was written is kept"
                } else {
                    written += chunk.count
                }
            }
            if let error {
                onFailure("cannot write desktop recording \(path): \(error); recording stopped, what was written is kept")
            }
        }
    }

    /// On the writer queue, after the last chunk: fsync, close, and the result for `close`.
    private func finishFile() {
        var result: Result<String, Error>
        let synced = fsync(fd) == 0
        if let failure = lock.withLock({ failure }) {
            result = .failure(RecorderError.writeFailed(failure))
        } else if !synced {
            result = .failure(RecorderError.writeFailed("cannot write desktop recording \(path): \(String(cString: strerror(errno)))"))
        } else {
            result = .success(path)
        }
        if Foundation.close(fd) != 0, case .success = result {
            result = .failure(RecorderError.writeFailed("cannot write desktop recording \(path): \(String(cString: strerror(errno)))"))
        }
        lock.withLock { closeResult = result }
    }

    // MARK: Time

    private func elapsed() -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - startUptime.uptimeNanoseconds) / 1e9
    }

    /// Milliseconds since `started`, for a record written now (never before the last one).
    private func nextTime() -> UInt32 {
        lastTime = max(lastTime, timeNow())
        return lastTime
    }

    private func timeNow() -> UInt32 {
        let ms = Date().timeIntervalSince(started) * 1000
        guard ms > 0 else { return 0 }
        return ms >= Double(UInt32.max) ? UInt32.max : UInt32(ms)
    }

    // MARK: Pixels

    @inline(__always)
    static func rgba(fromBGRX raw: UInt32) -> UInt32 {
        let p = UInt32(littleEndian: raw)
        let value = (p >> 16) & 0xFF | (p & 0xFF00) | (p & 0xFF) << 16 | 0xFF00_0000
        return value.littleEndian
    }

    static func blackRGBA(_ count: Int) -> [UInt32] {
        [UInt32](repeating: UInt32(0xFF00_0000).littleEndian, count: count)
    }

    static func blackBGRX(_ count: Int) -> [UInt32] {
        [UInt32](repeating: 0, count: count)
    }

    private static func clampSize(_ n: Int) -> Int { min(max(n, 1), Int(UInt16.max)) }

    private static func keyframeRecord(_ screen: [UInt32], width: Int, height: Int, time: UInt32) -> Data {
        let tile = screen.withUnsafeBytes {
            DesktopTile(x: 0, y: 0, width: width, height: height, rgba: $0, level: DesktopZlib.keyframeLevel)
        }
        return DesktopRecord.keyframe(tile).encoded(time: time)
    }

    private func copyCells(_ cells: CellGrid, from source: [UInt32], to destination: inout [UInt32], width: Int, height: Int) {
        let size = Self.cellSize
        source.withUnsafeBufferPointer { src in
            destination.withUnsafeMutableBufferPointer { dst in
                guard let s = src.baseAddress, let d = dst.baseAddress, src.count >= width * height,
                      dst.count >= width * height else { return }
                for index in cells.marked {
                    let x0 = (index % cells.columns) * size, x1 = min(width, x0 + size)
                    let y0 = (index / cells.columns) * size, y1 = min(height, y0 + size)
                    for y in y0..<y1 {
                        (d + y * width + x0).update(from: s + y * width + x0, count: x1 - x0)
                    }
                }
            }
        }
    }

    /// Writes all of `data`; nil or why not.
    private static func writeAll(_ fd: Int32, _ data: Data) -> String? {
        data.withUnsafeBytes { raw -> String? in
            guard let base = raw.baseAddress else { return nil }
            var offset = 0
            while offset < raw.count {
                let n = write(fd, base + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return String(cString: strerror(errno))
                }
                offset += n
            }
            return nil
        }
    }
}

/// Which 64×64 cells of a screen were touched.
struct CellGrid: Sendable {
    let columns: Int
    let rows: Int
    private var flags: [Bool]
    /// Indices of the set flags, in the order they were set (for cheap iteration).
    private(set) var marked: [Int] = []

    init(width: Int, height: Int) {
        let size = DesktopRecorder.cellSize
        columns = (width + size - 1) / size
        rows = (height + size - 1) / size
        flags = [Bool](repeating: false, count: columns * rows)
    }

    var isEmpty: Bool { marked.isEmpty }

    /// Marks the cells covering pixels x0..<x1, y0..<y1 (already clipped to the screen).
    mutating func mark(x0: Int, y0: Int, x1: Int, y1: Int) {
        let size = DesktopRecorder.cellSize
        for row in (y0 / size)...((y1 - 1) / size) where row < rows {
            for column in (x0 / size)...((x1 - 1) / size) where column < columns {
                let i = row * columns + column
                if !flags[i] {
                    flags[i] = true
                    marked.append(i)
                }
            }
        }
    }

    mutating func clear() {
        for i in marked { flags[i] = false }
        marked.removeAll(keepingCapacity: true)
    }
}
