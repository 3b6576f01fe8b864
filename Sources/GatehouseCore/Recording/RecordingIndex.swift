import CZlib
import Foundation

/// Keyframes of a recording, so that a player can start anywhere without replaying from the start.
///
/// Built by reading the recording once (plain or gzipped) through a `TerminalScreen` of the
/// header's size, resized on `"r"` events. Every `keyframeSeconds` of recording time (if the
/// screen changed) or `keyframeBytes` of event lines, whichever comes first, a keyframe keeps the
/// screen as it is before the next event line: its snapshot, size and the line's uncompressed
/// offset. Keyframes fall only between escape sequences, so a snapshot loses no half-parsed
/// sequence. The first keyframe is the blank screen just after the header. Markers (`"m"`) and
/// the duration are collected on the way.
///
/// Persisted beside the recording as `<recording>.idx` (`write(to:)`, `loadOrBuild`), with the
/// recording's size and modification time: an index that does not match them is rebuilt (or, for
/// a plain `.cast` that has only grown, extended from its last keyframe).
public struct RecordingIndex: Sendable, Equatable {
    public struct Options: Sendable, Equatable {
        /// A keyframe at least this often in recording time, while the screen changes.
        public var keyframeSeconds: Double
        /// And at least every this many bytes of event lines (uncompressed).
        public var keyframeBytes: Int

        public init(keyframeSeconds: Double = 30, keyframeBytes: Int = 4 << 20) {
            self.keyframeSeconds = keyframeSeconds
            self.keyframeBytes = keyframeBytes
        }
    }

    public struct Keyframe: Sendable, Equatable {
        /// The latest event time before `offset` (0 for the first keyframe).
        public var time: Double
        /// Uncompressed offset of the next line: the screen is as the events before it left it.
        public var offset: Int
        public var columns: Int
        public var rows: Int
        /// The snapshot, zlib-compressed (as kept in memory and in the index file: a long session
        /// has thousands of keyframes), and its size.
        var packedSnapshot: [UInt8]
        var snapshotSize: Int

        public init(time: Double, offset: Int, snapshot: [UInt8], columns: Int, rows: Int) {
            self.time = time
            self.offset = offset
            self.columns = columns
            self.rows = rows
            packedSnapshot = Self.pack(snapshot)
            snapshotSize = snapshot.count
        }

        init(time: Double, offset: Int, packedSnapshot: [UInt8], snapshotSize: Int, columns: Int, rows: Int) {
            self.time = time
            self.offset = offset
            self.columns = columns
            self.rows = rows
            self.packedSnapshot = packedSnapshot
            self.snapshotSize = snapshotSize
        }

        /// Bytes that, written to a blank terminal of `columns` × `rows`, draw the screen as it is
        /// at `offset` (`TerminalScreen.snapshot()`, preceded by the tab stops when they are not
        /// the default). Throws if the index file it came from was damaged.
        public func snapshot() throws -> [UInt8] {
            var size = uLongf(snapshotSize)
            var out = [UInt8](repeating: 0, count: max(1, snapshotSize))
            let rc = packedSnapshot.withUnsafeBufferPointer { packed in
                out.withUnsafeMutableBufferPointer { uncompress($0.baseAddress, &size, packed.baseAddress, uLong(packed.count)) }
            }
            guard rc == Z_OK, Int(size) == snapshotSize else {
                throw RecordingAccessError.corrupt(path: "recording index", reason: "a keyframe's snapshot is damaged")
            }
            out.removeSubrange(snapshotSize...)
            return out
        }

        static func pack(_ bytes: [UInt8]) -> [UInt8] {
            var size = compressBound(uLong(bytes.count))
            var out = [UInt8](repeating: 0, count: Int(size))
            let rc = bytes.withUnsafeBufferPointer { source in
                out.withUnsafeMutableBufferPointer { compress2($0.baseAddress, &size, source.baseAddress, uLong(source.count), 6) }
            }
            precondition(rc == Z_OK, "compress2 failed")
            out.removeSubrange(Int(size)...)
            return out
        }
    }

    public struct Marker: Sendable, Equatable {
        public var time: Double
        public var label: String
        /// Uncompressed offset of the marker's event line.
        public var offset: Int

        public init(time: Double, label: String, offset: Int) {
            self.time = time
            self.label = label
            self.offset = offset
        }
    }

    /// What identifies the recording an index was built from.
    public struct Stamp: Sendable, Equatable {
        public var size: Int
        public var modifiedSeconds: Int
        public var modifiedNanoseconds: Int

        public init(size: Int, modifiedSeconds: Int, modifiedNanoseconds: Int) {
            self.size = size
            self.modifiedSeconds = modifiedSeconds
            self.modifiedNanoseconds = modifiedNanoseconds
        }

        public static func of(_ path: String) throws -> Stamp {
            var info = stat()
            guard stat(path, &info) == 0 else { throw RecordingAccessError.io(path: path, reason: String(cString: strerror(errno))) }
            #if canImport(Darwin)
            let modified = info.st_mtimespec
            #else
            let modified = info.st_mtim
            #endif
            return Stamp(size: Int(info.st_size), modifiedSeconds: Int(modified.tv_sec), modifiedNanoseconds: Int(modified.tv_nsec))
        }
    }

    public static let formatVersion = 1

    public var stamp: Stamp
    public var options: Options
    /// The recording's header line, without its "\n".
    public var header: [UInt8]
    /// The terminal size the header gives.
    public var width: Int
    public var height: Int
    /// In order of offset (and of time); never empty.
    public var keyframes: [Keyframe]
    public var markers: [Marker]
    /// The latest event time.
    public var duration: Double
    /// Uncompressed bytes indexed: the end of the last whole line (a torn last line is left out).
    public var length: Int
    /// CRC-32 of the bytes from the last keyframe to `length`: a plain recording that has grown
    /// since is extended from that keyframe only if those bytes are unchanged.
    var tailCRC: UInt32

    /// Where the index of `recording` is kept: `<recording>.idx`.
    public static func path(forRecording recording: String) -> String { recording + ".idx" }

    /// Deletes the index of `recording`, if any: for whoever deletes or replaces a recording
    /// (retention, compression of a `.cast` into `.cast.gz`), so that no index outlives it.
    public static func removeIndex(forRecording recording: String) {
        unlink(path(forRecording: recording))
    }

    /// The keyframe to start from for the screen at `time`: the last one that every event before
    /// it precedes (time < `time`), else the first.
    public func keyframe(before time: Double) -> Keyframe {
        var low = 0, high = keyframes.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if keyframes[mid].time < time { low = mid } else { high = mid - 1 }
        }
        return keyframes[low]
    }

    /// The last keyframe at or before the uncompressed offset `offset`, else the first.
    public func keyframe(atOrBefore offset: Int) -> Keyframe {
        var low = 0, high = keyframes.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if keyframes[mid].offset <= offset { low = mid } else { high = mid - 1 }
        }
        return keyframes[low]
    }

    // MARK: - Building

    /// Reads the whole recording once. Throws `RecordingAccessError` for a file that cannot be
    /// read, is not asciicast v2, is truncated or corrupt gzip, or has a damaged event line (a
    /// torn last line, from a crash mid-write, is left out instead).
    public static func build(recording path: String, options: Options = Options()) throws -> RecordingIndex {
        let stamp = try Stamp.of(path)
        let reader = try RecordingByteReader(path: path, offset: 0)
        var lines = RecordingLineReader(reader)
        guard let first = try lines.next() else {
            throw RecordingAccessError.notAsciicast(path: path, reason: "the file is empty")
        }
        guard first.terminated else { throw RecordingAccessError.notAsciicast(path: path, reason: "the header line is incomplete") }
        let (width, height) = try parseHeader(first.bytes, path: path)
        var builder = Builder(path: path, options: options, screen: TerminalScreen(columns: width, rows: height), at: first.end)
        _ = try builder.run(&lines, verifying: nil)
        return builder.index(stamp: stamp, header: first.bytes, width: width, height: height)
    }

    /// `old`, brought up to date with a plain recording that has grown since (appended to): the
    /// events after its last keyframe are read again and on. Nil when `old` cannot be extended
    /// (compressed, shrunk, or the bytes it covered have changed).
    static func extend(_ old: RecordingIndex, recording path: String) throws -> RecordingIndex? {
        let stamp = try Stamp.of(path)
        guard stamp.size >= old.length, let last = old.keyframes.last else { return nil }
        let head = try RecordingByteReader(path: path, offset: 0)
        guard !head.isCompressed else { return nil }
        var headLines = RecordingLineReader(head)
        guard let first = try headLines.next(), first.terminated, first.bytes == old.header else { return nil }
        var lines = RecordingLineReader(try RecordingByteReader(path: path, offset: last.offset))
        var screen = TerminalScreen(columns: last.columns, rows: last.rows)
        screen.feed(try last.snapshot())
        var builder = Builder(path: path, options: old.options, screen: screen, at: last.offset)
        builder.keyframes = old.keyframes
        builder.markers = old.markers.filter { $0.offset < last.offset }
        builder.runningMax = last.time
        builder.lastKeyframeTime = last.time
        guard try builder.run(&lines, verifying: (old.length, old.tailCRC)) else { return nil }
        return builder.index(stamp: stamp, header: old.header, width: old.width, height: old.height)
    }

    static func parseHeader(_ line: [UInt8], path: String) throws -> (Int, Int) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
            throw RecordingAccessError.notAsciicast(path: path, reason: "the first line is not a JSON object")
        }
        guard (object["version"] as? NSNumber)?.intValue == 2 else {
            throw RecordingAccessError.notAsciicast(path: path, reason: "no version 2 header")
        }
        let width = (object["width"] as? NSNumber)?.intValue ?? 80
        let height = (object["height"] as? NSNumber)?.intValue ?? 24
        return (width, height)
    }

    /// The event on a line; nil for a blank line. Throws for anything else that is not an event.
    static func parseEvent(_ line: RecordingLineReader.Line, path: String) throws -> AsciicastEvent? {
        if let event = AsciicastReader.parseEvent(line.bytes), event.time.isFinite { return event }
        if line.bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return nil }
        throw RecordingAccessError.corrupt(path: path, reason: "the line at offset \(line.offset) is not an asciicast event")
    }

    /// A keyframe's drawing of `screen`: its snapshot, preceded by its tab stops when they differ
    /// from the default (a snapshot does not carry them).
    static func snapshot(of screen: TerminalScreen) -> [UInt8] {
        var out: [UInt8] = []
        if screen.tabStops != TerminalScreen.defaultTabStops(screen.columns) {
            out += Array("\u{1B}[3g".utf8)
            for (column, set) in screen.tabStops.enumerated() where set {
                out += Array("\u{1B}[\(column + 1)G\u{1B}H".utf8)
            }
        }
        out += screen.snapshot()
        return out
    }

    struct Builder {
        let path: String
        let options: Options
        var screen: TerminalScreen
        var keyframes: [Keyframe] = []
        var markers: [Marker] = []
        var runningMax = 0.0
        var lastKeyframeTime = 0.0
        var bytesSinceKeyframe = 0
        var changedSinceKeyframe = false
        var crc = crc32(0, nil, 0)
        /// The end of the last whole line read.
        var end: Int

        init(path: String, options: Options, screen: TerminalScreen, at offset: Int) {
            self.path = path
            self.options = options
            self.screen = screen
            end = offset
            keyframes = [Keyframe(time: 0, offset: offset, snapshot: RecordingIndex.snapshot(of: screen),
                                  columns: screen.columns, rows: screen.rows)]
        }

        /// Reads every whole line. With `verifying` (an old index's length and tail CRC), false if
        /// the lines up to that length are not the ones it was built from.
        mutating func run(_ lines: inout RecordingLineReader, verifying: (length: Int, crc: UInt32)?) throws -> Bool {
            var verified = verifying == nil
            if let verifying, verifying.length == end { verified = UInt32(crc) == verifying.crc }
            while let line = try lines.next(), line.terminated {
                let event = try RecordingIndex.parseEvent(line, path: path)
                if let event {
                    switch event.code {
                    case "o", "r":
                        screen.apply(event)
                        changedSinceKeyframe = true
                    case "m":
                        markers.append(Marker(time: event.time, label: String(decoding: event.data, as: UTF8.self), offset: line.offset))
                    default:
                        break
                    }
                    runningMax = max(runningMax, event.time)
                }
                line.bytes.withUnsafeBufferPointer { crc = crc32(crc, $0.baseAddress, uInt($0.count)) }
                var newline: UInt8 = 0x0A
                crc = crc32(crc, &newline, 1)
                bytesSinceKeyframe += line.bytes.count + 1
                end = line.end
                if let verifying, !verified {
                    if end == verifying.length {
                        guard UInt32(crc) == verifying.crc else { return false }
                        verified = true
                    } else if end > verifying.length {
                        return false
                    }
                }
                let due = bytesSinceKeyframe >= options.keyframeBytes
                    || (changedSinceKeyframe && runningMax - lastKeyframeTime >= options.keyframeSeconds)
                if due, screen.isBetweenSequences {
                    keyframes.append(Keyframe(time: runningMax, offset: end, snapshot: RecordingIndex.snapshot(of: screen),
                                              columns: screen.columns, rows: screen.rows))
                    lastKeyframeTime = runningMax
                    bytesSinceKeyframe = 0
                    changedSinceKeyframe = false
                    crc = crc32(0, nil, 0)
                }
            }
            return verified
        }

        func index(stamp: Stamp, header: [UInt8], width: Int, height: Int) -> RecordingIndex {
            RecordingIndex(stamp: stamp, options: options, header: header, width: width, height: height,
                           keyframes: keyframes, markers: markers, duration: runningMax, length: end,
                           tailCRC: UInt32(crc))
        }
    }

    // MARK: - Persisting

    /// Builds the index of `recording`, or loads it from `<recording>.idx` when that is valid and
    /// matches the recording's size and modification time (and `options`). A fresh index is
    /// written beside the recording when `persist` (best effort: a read-only directory only
    /// means it is built again next time).
    public static func loadOrBuild(recording path: String, options: Options = Options(), persist: Bool = true) throws -> RecordingIndex {
        let stamp = try Stamp.of(path)
        let indexPath = Self.path(forRecording: path)
        var index: RecordingIndex?
        if let stored = read(from: indexPath), stored.options == options {
            if stored.stamp == stamp { return stored }
            if stamp.size > stored.stamp.size { index = try? extend(stored, recording: path) }
        }
        let built = try index ?? build(recording: path, options: options)
        if persist, (try? Stamp.of(path)) == built.stamp { try? built.write(to: indexPath) }
        return built
    }

    /// The index stored in `<recording>.idx` if it is whole, valid and matches the recording as
    /// it is now (and `options`); nil otherwise.
    public static func load(recording path: String, options: Options = Options()) -> RecordingIndex? {
        guard let stamp = try? Stamp.of(path), let stored = read(from: Self.path(forRecording: path)),
              stored.stamp == stamp, stored.options == options else { return nil }
        return stored
    }

    private static let formatName = "gatehouse-recording-index"
    private static let maxFileSize = 1 << 30

    private struct FileHeader: Codable {
        var format: String
        var version: Int
        var recordingSize: Int
        var recordingModified: [Int]
        var keyframeSeconds: Double
        var keyframeBytes: Int
        var header: Data
        var width: Int
        var height: Int
        var duration: Double
        var length: Int
        var tailCRC: UInt32
        var keyframes: Int
        var markers: Int
    }

    private struct FileKeyframe: Codable {
        var t: Double
        var o: Int
        var c: Int
        var r: Int
        /// The snapshot, zlib-compressed, and its size.
        var s: Data
        var n: Int
    }

    private struct FileMarker: Codable {
        var t: Double
        var o: Int
        var m: String
    }

    /// Writes the index as JSON lines: a header object (format, version, the recording's size and
    /// modification time, options, its header line in base64, size, duration, length, counts), one line per keyframe (`t`, `o`ffset, `c`olumns, `r`ows, `s`napshot zlib-compressed
    /// in base64, `n` its size),
    /// one per marker (`t`, `o`ffset, `m` label). Written to a temporary name and renamed; 0600,
    /// as it holds screen contents.
    public func write(to indexPath: String) throws {
        let encoder = JSONEncoder()
        var out = Data()
        let head = FileHeader(format: Self.formatName, version: Self.formatVersion, recordingSize: stamp.size,
                              recordingModified: [stamp.modifiedSeconds, stamp.modifiedNanoseconds],
                              keyframeSeconds: options.keyframeSeconds, keyframeBytes: options.keyframeBytes,
                              header: Data(header), width: width, height: height, duration: duration, length: length,
                              tailCRC: tailCRC, keyframes: keyframes.count, markers: markers.count)
        out += try encoder.encode(head)
        out.append(0x0A)
        for k in keyframes {
            out += try encoder.encode(FileKeyframe(t: k.time, o: k.offset, c: k.columns, r: k.rows, s: Data(k.packedSnapshot),
                                                  n: k.snapshotSize))
            out.append(0x0A)
        }
        for m in markers {
            out += try encoder.encode(FileMarker(t: m.time, o: m.offset, m: m.label))
            out.append(0x0A)
        }
        let temporary = indexPath + ".\(getpid()).\(UInt32.random(in: 0 ... .max)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RecordingAccessError.io(path: temporary, reason: String(cString: strerror(errno))) }
        let ok = out.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
        let reason = String(cString: strerror(errno))
        close(fd)
        guard ok, rename(temporary, indexPath) == 0 else {
            unlink(temporary)
            throw RecordingAccessError.io(path: indexPath, reason: reason)
        }
    }

    /// Reads an index file; nil if it is missing, cut short or inconsistent in any way.
    static func read(from indexPath: String) -> RecordingIndex? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: indexPath),
              let size = attributes[.size] as? NSNumber, size.intValue < maxFileSize,
              let data = FileManager.default.contents(atPath: indexPath), data.last == 0x0A else { return nil }
        // Line ranges, found with memchr (a generic split is slow on a large index).
        var lines: [Range<Int>] = []
        data.withUnsafeBytes { raw in
            var start = 0
            while start < raw.count, let p = memchr(raw.baseAddress! + start, 0x0A, raw.count - start) {
                let end = raw.baseAddress!.distance(to: UnsafeRawPointer(p))
                lines.append(start..<end)
                start = end + 1
            }
        }
        let decoder = JSONDecoder()
        guard let first = lines.first, let head = try? decoder.decode(FileHeader.self, from: data[first]),
              head.format == formatName, head.version == formatVersion, head.recordingModified.count == 2,
              head.keyframes >= 1, head.markers >= 0, lines.count == 1 + head.keyframes + head.markers,
              head.length >= 0, head.recordingSize >= 0,
              head.keyframeBytes > 0, head.keyframeSeconds > 0, head.duration.isFinite,
              (try? parseHeader(Array(head.header), path: indexPath)) != nil else { return nil }
        var keyframes: [Keyframe] = []
        keyframes.reserveCapacity(head.keyframes)
        var markers: [Marker] = []
        markers.reserveCapacity(head.markers)
        var k = lines.startIndex + 1
        for _ in 0..<head.keyframes {
            guard let f = try? decoder.decode(FileKeyframe.self, from: data[lines[k]]), f.t.isFinite,
                  f.c >= 1, f.c <= TerminalScreen.maxColumns, f.r >= 1, f.r <= TerminalScreen.maxRows,
                  f.o <= head.length, f.n >= 0, f.n < 64 << 20 else { return nil }
            if let previous = keyframes.last {
                guard f.o > previous.offset, f.t >= previous.time else { return nil }
            } else {
                guard f.o == head.header.count + 1, f.t == 0 else { return nil }
            }
            keyframes.append(Keyframe(time: f.t, offset: f.o, packedSnapshot: Array(f.s), snapshotSize: f.n, columns: f.c, rows: f.r))
            k += 1
        }
        for _ in 0..<head.markers {
            guard let m = try? decoder.decode(FileMarker.self, from: data[lines[k]]), m.t.isFinite,
                  m.o > head.header.count, m.o < head.length else { return nil }
            markers.append(Marker(time: m.t, label: m.m, offset: m.o))
            k += 1
        }
        return RecordingIndex(stamp: Stamp(size: head.recordingSize, modifiedSeconds: head.recordingModified[0],
                                           modifiedNanoseconds: head.recordingModified[1]),
                              options: Options(keyframeSeconds: head.keyframeSeconds, keyframeBytes: head.keyframeBytes),
                              header: Array(head.header), width: head.width, height: head.height, keyframes: keyframes,
                              markers: markers, duration: head.duration, length: head.length, tailCRC: head.tailCRC)
    }
}

extension TerminalScreen {
    /// Not inside an escape sequence or a UTF-8 character: a snapshot taken now loses nothing
    /// the next bytes depend on, and output starting here is read the same as after the rest.
    var isBetweenSequences: Bool { state == .ground && utf8Remaining == 0 }

    /// Applies an event: output is fed, a resize (`"COLSxROWS"`) resizes; others change nothing.
    mutating func apply(_ event: AsciicastEvent) {
        switch event.code {
        case "o":
            feed(event.data)
        case "r":
            if let (columns, rows) = Self.parseSize(event.data) { resize(columns: columns, rows: rows) }
        default:
            break
        }
    }

    static func parseSize(_ data: [UInt8]) -> (Int, Int)? {
        guard let x = data.firstIndex(of: UInt8(ascii: "x")), x > 0, x < data.count - 1,
              x <= 9, data.count - x - 1 <= 9 else { return nil }
        var columns = 0, rows = 0
        for b in data[..<x] {
            guard b >= 0x30, b <= 0x39 else { return nil }
            columns = columns * 10 + Int(b - 0x30)
        }
        for b in data[(x + 1)...] {
            guard b >= 0x30, b <= 0x39 else { return nil }
            rows = rows * 10 + Int(b - 0x30)
        }
        guard columns > 0, rows > 0 else { return nil }
        return (columns, rows)
    }
}
