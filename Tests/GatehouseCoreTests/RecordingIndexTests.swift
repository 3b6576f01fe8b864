import Foundation
import XCTest
@testable import GatehouseCore

final class RecordingIndexTests: XCTestCase {
    /// A synthetic session: 20k output events over about an hour of recording time, with colours,
    /// cursor movement, full-screen programs on the alternate screen, tab stops, wide and
    /// combining characters, escape sequences split across events, resizes and markers.
    struct Sample {
        var bytes: [UInt8]
        /// Every line after the header: its offset, its bytes (without "\n") and its event.
        var lines: [(offset: Int, bytes: [UInt8], event: AsciicastEvent)]
        var markers: [(Double, String)]
    }

    static let sample: Sample = makeSample(events: 20_000, seed: 0x5EE4)
    /// For the tests that build many indexes.
    static let small: Sample = makeSample(events: 3_000, seed: 0x5A11)

    /// The sample as a plain and a gzipped file (64 KiB access points), with their seekers,
    /// shared by the tests that only read them.
    struct Shared {
        var directory: String
        var plain: String
        var gz: String
        var plainSeeker: RecordingSeeker
        var gzSeeker: RecordingSeeker
    }

    /// Small intervals, so that the sample has many keyframes and access points.
    static let options = RecordingIndex.Options(keyframeSeconds: 30, keyframeBytes: 64 * 1024)
    var options: RecordingIndex.Options { Self.options }

    nonisolated(unsafe) static var sharedFiles: Shared?

    func shared() throws -> Shared {
        if let shared = Self.sharedFiles { return shared }
        let directory = NSTemporaryDirectory() + "gatehouse-index-shared-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let plain = directory + "/s.cast"
        try Data(Self.sample.bytes).write(to: URL(fileURLWithPath: plain))
        try Gzip.compressFile(plain, to: plain + ".gz", accessPointInterval: 64 * 1024)
        let shared = Shared(directory: directory, plain: plain, gz: plain + ".gz",
                            plainSeeker: try RecordingSeeker(path: plain, options: Self.options),
                            gzSeeker: try RecordingSeeker(path: plain + ".gz", options: Self.options))
        Self.sharedFiles = shared
        return shared
    }

    override class func tearDown() {
        if let shared = sharedFiles { try? FileManager.default.removeItem(atPath: shared.directory) }
        sharedFiles = nil
        super.tearDown()
    }

    static func makeSample(events count: Int, seed: UInt64) -> Sample {
        var rng = SplitMix(seed)
        var encoder = AsciicastEncoder()
        var out = AsciicastEncoder.header(width: 80, height: 24, timestamp: 1_700_000_000, term: "xterm", title: "t@x")
        var time = 0.0
        var markers: [(Double, String)] = []
        let words = ["ls", "-la", "total", "drwxr-xr-x", "root", "中文", "e\u{301}", "naïve", "\t", "42", "gatehouse", "\u{1F600}"]
        var alternate = false
        var heldEscape = false
        for i in 0..<count {
            time += Double(rng.next() % 400_000) / 1_000_000 // up to 0.4 s apart
            if i % 997 == 500, !heldEscape {
                let size = [(80, 24), (120, 40), (60, 15), (200, 50)][Int(rng.next() % 4)]
                encoder.resize(columns: size.0, rows: size.1, at: time, to: &out)
                continue
            }
            if i % 211 == 7, !heldEscape {
                let label = "$ command \(i) ✓"
                encoder.marker(label, at: time, to: &out)
                markers.append((time, label))
                continue
            }
            var chunk: [UInt8] = []
            if heldEscape {
                chunk += Array("1;33m".utf8) // the end of a sequence started in the previous event
                heldEscape = false
            }
            switch rng.next() % 40 {
            case 0:
                chunk += Array("\u{1B}[?1049h\u{1B}[H\u{1B}[2Jfull screen \(i)\u{1B}[5;10Hmiddle\u{1B}[3;20r".utf8)
                alternate = true
            case 1 where alternate:
                chunk += Array("\u{1B}[r\u{1B}[?1049l".utf8)
                alternate = false
            case 2:
                chunk += Array("\u{1B}[3g\u{1B}[5G\u{1B}H\u{1B}[13G\u{1B}H\r".utf8) // custom tab stops
            case 3:
                chunk += Array("\u{1B}[?25l".utf8)
            case 4:
                chunk += Array("\u{1B}[?25h\u{1B}[4h ins \u{1B}[4l".utf8)
            case 5:
                chunk += Array("\u{1B}[2J\u{1B}[H".utf8)
            case 6:
                chunk += Array("\u{1B}[".utf8) // split: the next event ends it
                heldEscape = true
            case 7:
                chunk += Array("\u{1B}]0;title \(i)\u{07}".utf8)
            case 8:
                chunk += Array("\u{1B}[\(rng.next() % 30 + 1);\(rng.next() % 90 + 1)H".utf8)
            default:
                break
            }
            if !heldEscape {
                let n = Int(rng.next() % 4) + 1
                for k in 0..<n {
                    if rng.next() % 5 == 0 { chunk += Array("\u{1B}[3\(k % 8)m".utf8) }
                    chunk += Array(words[Int(rng.next() % UInt64(words.count))].utf8)
                    chunk.append(0x20)
                }
                chunk += Array("\u{1B}[0m\r\n".utf8)
            }
            chunk.withUnsafeBytes { encoder.output($0, at: time, to: &out) }
        }
        encoder.finish(at: time, to: &out)
        var lines: [(Int, [UInt8], AsciicastEvent)] = []
        var start = out.firstIndex(of: 0x0A)! + 1
        while start < out.count {
            let end = out[start...].firstIndex(of: 0x0A)!
            let line = Array(out[start..<end])
            lines.append((start, line, AsciicastReader.parseEvent(line)!))
            start = end + 1
        }
        return Sample(bytes: out, lines: lines, markers: markers)
    }

    struct SplitMix {
        var state: UInt64
        init(_ seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "gatehouse-index-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = directory + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func gzipped(_ name: String = "s.cast", _ sample: Sample = small) throws -> String {
        let plain = try write(sample.bytes, name)
        try Gzip.compressFile(plain, to: plain + ".gz", accessPointInterval: 64 * 1024)
        return plain + ".gz"
    }

    func run(_ tool: String, _ arguments: [String]) throws -> (Int32, Data) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, data)
    }

    // MARK: - Screens

    /// The screen a player shows after a window's synthetic start.
    func screenAfterStart(of window: RecordingWindow) -> TerminalScreen {
        let lines = window.start.split(separator: 0x0A).map { AsciicastReader.parseEvent(Array($0))! }
        XCTAssertEqual(lines.map(\.code), ["r", "o"])
        XCTAssertEqual(lines[0].time, window.startTime, accuracy: 1e-6)
        XCTAssertEqual(lines[1].time, window.startTime, accuracy: 1e-6)
        var screen = TerminalScreen(columns: 1, rows: 1)
        screen.apply(lines[0])
        XCTAssertEqual(screen.columns, window.columns)
        XCTAssertEqual(screen.rows, window.rows)
        screen.feed(lines[1].data)
        return screen
    }

    func assertSameScreen(_ a: TerminalScreen, _ b: TerminalScreen, _ context: String, line: UInt = #line) {
        XCTAssertEqual(a.columns, b.columns, context, line: line)
        XCTAssertEqual(a.rows, b.rows, context, line: line)
        XCTAssertEqual(a.lines, b.lines, context, line: line)
        XCTAssertEqual(a.text(from: .init(row: 0, column: 0), to: .init(row: a.rows, column: 0)),
                       b.text(from: .init(row: 0, column: 0), to: .init(row: b.rows, column: 0)), context, line: line)
        XCTAssertEqual(a.cursor, b.cursor, context, line: line)
        XCTAssertEqual(a.pendingWrap, b.pendingWrap, context, line: line)
        XCTAssertEqual(a.isAlternateScreen, b.isAlternateScreen, context, line: line)
        XCTAssertEqual(a.isCursorVisible, b.isCursorVisible, context, line: line)
        XCTAssertEqual(a.insertMode, b.insertMode, context, line: line)
        XCTAssertEqual(a.autowrap, b.autowrap, context, line: line)
        XCTAssertEqual([a.scrollTop, a.scrollBottom], [b.scrollTop, b.scrollBottom], context, line: line)
        XCTAssertEqual(a.tabStops, b.tabStops, context, line: line)
        if a.isAlternateScreen, let ma = a.inactive, let mb = b.inactive {
            // The main screen, shown again when the full-screen program ends.
            XCTAssertEqual(ma.rowMap.map { Array(ma.cells[($0 * a.columns)..<(($0 + 1) * a.columns)]) },
                           mb.rowMap.map { Array(mb.cells[($0 * b.columns)..<(($0 + 1) * b.columns)]) }, context, line: line)
        }
    }

    /// Checks each window's start against a replay of every event before it through a fresh
    /// screen (one pass over the sample, windows in order of start).
    func assertStartsMatchFullReplay(_ windows: [RecordingWindow], line: UInt = #line) {
        let sample = Self.sample
        var screen = TerminalScreen(columns: 80, rows: 24)
        var k = 0
        for window in windows.sorted(by: { $0.startOffset < $1.startOffset }) {
            while k < sample.lines.count, sample.lines[k].offset < window.startOffset {
                screen.apply(sample.lines[k].event)
                k += 1
            }
            XCTAssertTrue(k == sample.lines.count || sample.lines[k].offset == window.startOffset, line: line)
            assertSameScreen(screenAfterStart(of: window), screen, "window at \(window.startTime)", line: line)
        }
    }

    // MARK: - Tests

    func testCompressedFileIsValidGzipWithAccessPoints() throws {
        let path = try shared().gz
        let original = Data(Self.sample.bytes)
        XCTAssertEqual(try Gzip.decompress(Data(contentsOf: URL(fileURLWithPath: path))), original)
        XCTAssertEqual(try Gzip.readFile(path), original)
        let stream = try RecordingStream(path: path, compressed: true, wholeLinesOnly: false) // what the web API reads
        var streamed: [UInt8] = []
        while let chunk = try stream.next() { streamed += chunk }
        XCTAssertEqual(streamed, Self.sample.bytes)
        guard FileManager.default.isExecutableFile(atPath: "/bin/gzip") else { throw XCTSkip("no gzip") }
        XCTAssertEqual(try run("/bin/gzip", ["-t", path]).0, 0)
        let (status, unzipped) = try run("/bin/gzip", ["-dc", path])
        XCTAssertEqual(status, 0)
        XCTAssertEqual(unzipped, original)
        let (listed, listing) = try run("/bin/gzip", ["-l", path])
        XCTAssertEqual(listed, 0)
        XCTAssertTrue(String(decoding: listing, as: UTF8.self).contains(" \(original.count) "), "gzip -l sees the real size")

        let points = try XCTUnwrap(try Gzip.accessPoints(ofFile: path))
        XCTAssertEqual(points.uncompressedSize, original.count)
        XCTAssertEqual(points.points.count, original.count / (64 * 1024) + 1)
        XCTAssertEqual(points.points[1].uncompressed, 64 * 1024)
        XCTAssertNil(try Gzip.accessPoints(ofFile: try shared().plain), "plain file")

        // Random access agrees with the original everywhere, across point boundaries and at the end.
        var rng = SplitMix(7)
        for offset in [0, 1, 64 * 1024 - 1, 64 * 1024, 200_000, original.count - 3, original.count, original.count + 10]
            + (0..<20).map({ _ in Int(rng.next() % UInt64(original.count)) }) {
            let reader = try RecordingByteReader(path: path, offset: offset)
            let got = try reader.read(upTo: 100_000)
            let want = Array(Self.sample.bytes[min(offset, original.count)..<min(original.count, offset + got.count)])
            XCTAssertEqual(got, want, "at \(offset)")
            XCTAssertTrue(offset >= original.count || !got.isEmpty)
        }

        // Empty input: still a valid gzip file.
        let empty = try write([], "empty")
        try Gzip.compressFile(empty, to: empty + ".gz")
        XCTAssertEqual(try Gzip.readFile(empty + ".gz"), Data())
        XCTAssertEqual(try run("/bin/gzip", ["-t", empty + ".gz"]).0, 0)
    }

    func testIndexCollectsKeyframesMarkersAndDuration() throws {
        let index = try shared().gzSeeker.index
        XCTAssertEqual(try shared().plainSeeker.index.keyframes, index.keyframes)
        let sample = Self.sample
        XCTAssertEqual(index.width, 80)
        XCTAssertEqual(index.height, 24)
        XCTAssertEqual(index.length, sample.bytes.count)
        XCTAssertEqual(index.duration, sample.lines.last!.event.time)
        XCTAssertEqual(index.markers.map(\.label), sample.markers.map(\.1))
        XCTAssertEqual(index.markers.map(\.time), sample.lines.filter { $0.event.code == "m" }.map(\.event.time))
        for marker in index.markers {
            XCTAssertEqual(sample.lines.first { $0.offset == marker.offset }?.event.code, "m")
        }
        XCTAssertEqual(index.keyframes[0].offset, sample.lines[0].offset)
        XCTAssertGreaterThan(index.keyframes.count, sample.bytes.count / (64 * 1024))
        XCTAssertTrue(Set(index.keyframes.map { "\($0.columns)x\($0.rows)" }).count > 1, "resizes are followed")
        // Every keyframe draws the screen a full replay has at its offset.
        var screen = TerminalScreen(columns: 80, rows: 24)
        var k = 0
        for keyframe in index.keyframes {
            while k < sample.lines.count, sample.lines[k].offset < keyframe.offset {
                screen.apply(sample.lines[k].event)
                k += 1
            }
            XCTAssertEqual(sample.lines[k].offset, keyframe.offset)
            XCTAssertEqual(keyframe.time, k == 0 ? 0 : sample.lines[k - 1].event.time)
            var drawn = TerminalScreen(columns: keyframe.columns, rows: keyframe.rows)
            drawn.feed(try keyframe.snapshot())
            assertSameScreen(drawn, screen, "keyframe at \(keyframe.offset)")
        }
    }

    func testWindowsGiveTheScreenOfAFullReplay() throws {
        let sample = Self.sample
        let duration = sample.lines.last!.event.time
        // An escape sequence split across two events: a time that falls between them.
        let splitAt = sample.lines.indices.first { k in
            k > 1000 && sample.lines[k].event.data == Array("\u{1B}[".utf8)
                && sample.lines[k + 1].event.data.last != UInt8(ascii: "[")
                && sample.lines[k + 1].event.time > sample.lines[k].event.time
        }!
        let times = [0, 0.05, duration / 7, duration / 3, duration / 2, duration * 0.9, duration - 0.001, duration,
                     duration + 60, sample.markers[5].0, sample.lines[splitAt + 1].event.time]
        for seeker in [try shared().plainSeeker, try shared().gzSeeker] {
            var windows: [RecordingWindow] = []
            for time in times {
                let window = try seeker.window(at: time, maxBytes: 16 * 1024)
                XCTAssertEqual(window.header, Array(sample.bytes[..<(sample.lines[0].offset)]))
                XCTAssertEqual(window.startTime, time)
                if let first = sample.lines.first(where: { $0.offset == window.startOffset }) {
                    XCTAssertGreaterThanOrEqual(first.event.time, time)
                    XCTAssertEqual(Array(window.events.prefix(first.bytes.count)), first.bytes)
                    if window.ended {
                        XCTAssertEqual(window.startOffset + window.events.count, sample.bytes.count)
                    } else {
                        XCTAssertGreaterThanOrEqual(window.events.count, 16 * 1024)
                        XCTAssertLessThan(window.events.count, 16 * 1024 + 4096)
                        XCTAssertEqual(window.nextOffset, window.startOffset + window.events.count)
                    }
                } else {
                    XCTAssertEqual(window.startOffset, sample.bytes.count)
                    XCTAssertTrue(window.events.isEmpty)
                    XCTAssertTrue(window.ended)
                    XCTAssertNil(window.nextTime)
                }
                windows.append(window)
            }
            // Every event before a window's start is earlier than its time; but a time that falls
            // inside a split escape sequence starts one event later, past the sequence's end.
            for (time, window) in zip(times, windows).dropLast() {
                XCTAssertTrue(sample.lines.allSatisfy { $0.offset >= window.startOffset || $0.event.time < time }, "\(time)")
            }
            XCTAssertEqual(windows.last!.startOffset, sample.lines[splitAt + 2].offset)
            assertStartsMatchFullReplay(windows)
        }
    }

    func testConsecutiveWindowsJoinToTheRecordingExactly() throws {
        let sample = Self.sample
        let seeker = try shared().gzSeeker
        let from = sample.lines.last!.event.time * 0.6
        var window = try seeker.window(at: from, maxBytes: 40_000)
        let startOffset = window.startOffset
        var joined = window.events
        var windows = [window]
        var byOffset = window.events
        while let next = window.nextTime {
            let following = try seeker.window(at: next, maxBytes: 40_000)
            XCTAssertEqual(following.startOffset, window.nextOffset)
            let sameByOffset = try seeker.window(fromOffset: window.nextOffset, maxBytes: 40_000)
            XCTAssertEqual(sameByOffset.events, following.events)
            XCTAssertEqual(sameByOffset.start.count > 0, true)
            byOffset += sameByOffset.events
            joined += following.events
            windows.append(following)
            window = following
        }
        XCTAssertTrue(window.ended)
        XCTAssertEqual(window.nextOffset, sample.bytes.count)
        XCTAssertGreaterThan(windows.count, 5)
        XCTAssertEqual(joined, Array(sample.bytes[startOffset...]))
        XCTAssertEqual(byOffset, joined)
        assertStartsMatchFullReplay(windows)

        // Offsets that are not line starts are refused, as is the header.
        XCTAssertThrowsError(try seeker.window(fromOffset: startOffset + 1, maxBytes: 100))
        XCTAssertThrowsError(try seeker.window(fromOffset: 3, maxBytes: 100))
        XCTAssertThrowsError(try seeker.window(fromOffset: sample.bytes.count + 5, maxBytes: 100))
        XCTAssertThrowsError(try seeker.window(at: .nan, maxBytes: 100))
        XCTAssertTrue(try seeker.window(fromOffset: sample.bytes.count, maxBytes: 100).ended)
    }

    func testIndexIsPersistedAndAStaleOrCorruptOneIsRebuilt() throws {
        let path = try write(Self.small.bytes, "p.cast")
        let indexPath = RecordingIndex.path(forRecording: path)
        XCTAssertEqual(indexPath, path + ".idx")
        let built = try RecordingIndex.loadOrBuild(recording: path, options: options)
        XCTAssertTrue(FileManager.default.fileExists(atPath: indexPath))
        let permissions = try FileManager.default.attributesOfItem(atPath: indexPath)[.posixPermissions] as? Int
        XCTAssertEqual(permissions, 0o600)
        XCTAssertEqual(RecordingIndex.load(recording: path, options: options), built)
        XCTAssertNil(RecordingIndex.load(recording: path), "other options")
        XCTAssertEqual(try RecordingIndex.loadOrBuild(recording: path, options: options), built)

        // Corrupt index files: each is rebuilt (and rewritten), never trusted.
        let good = try Data(contentsOf: URL(fileURLWithPath: indexPath))
        var flipped = good
        let keyframeLine = good.firstIndex(of: 0x0A)! + 10
        flipped[keyframeLine] = UInt8(ascii: "#")
        var wrongCount = String(decoding: good, as: UTF8.self)
        wrongCount = wrongCount.replacingOccurrences(of: "\"markers\":\(built.markers.count)", with: "\"markers\":\(built.markers.count + 1)")
        XCTAssertNotEqual(Data(wrongCount.utf8), good)
        for bad in [good.prefix(good.count / 2), good.prefix(good.count - 1), flipped, Data("garbage\n".utf8), Data(),
                    Data(wrongCount.utf8)] {
            try bad.write(to: URL(fileURLWithPath: indexPath))
            XCTAssertNil(RecordingIndex.load(recording: path, options: options))
            XCTAssertEqual(try RecordingIndex.loadOrBuild(recording: path, options: options), built)
            XCTAssertEqual(RecordingIndex.load(recording: path, options: options), built, "rewritten")
        }

        // A stale index (the recording changed since): rebuilt.
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        XCTAssertEqual(utimensat(AT_FDCWD, path, &times, 0), 0)
        XCTAssertNil(RecordingIndex.load(recording: path, options: options))
        let rebuilt = try RecordingIndex.loadOrBuild(recording: path, options: options)
        XCTAssertNotEqual(rebuilt.stamp, built.stamp)
        XCTAssertEqual(rebuilt.stamp.modifiedSeconds, 1_000_000_000)
        XCTAssertEqual(RecordingIndex.load(recording: path, options: options), rebuilt)

        // A recording still being written grows: the index is extended from its last keyframe and
        // comes out as a fresh build would.
        let growing = try write(Array(Self.small.bytes[..<Self.small.lines[1_800].offset]) + Array("[1.0, \"o\", \"tor".utf8), "g.cast")
        let partial = try RecordingIndex.loadOrBuild(recording: growing, options: options)
        XCTAssertEqual(partial.length, Self.small.lines[1_800].offset, "the torn last line is left out")
        try Data(Self.small.bytes).write(to: URL(fileURLWithPath: growing))
        let extended = try RecordingIndex.loadOrBuild(recording: growing, options: options)
        let fresh = try RecordingIndex.build(recording: growing, options: options)
        XCTAssertEqual(extended.keyframes.map(\.offset), fresh.keyframes.map(\.offset))
        XCTAssertEqual(extended.markers, fresh.markers)
        XCTAssertEqual(extended.length, fresh.length)
        XCTAssertEqual(extended.duration, fresh.duration)
        XCTAssertEqual(extended.stamp, fresh.stamp)
        XCTAssertEqual(RecordingIndex.load(recording: growing, options: options), extended)
    }

    func testTruncatedOrCorruptRecordingsGiveClearErrors() throws {
        let gz = try gzipped()
        let compressed = try Data(contentsOf: URL(fileURLWithPath: gz))

        func error(_ bytes: Data, _ name: String) -> RecordingAccessError? {
            let path = directory + "/" + name
            try? bytes.write(to: URL(fileURLWithPath: path))
            do {
                _ = try RecordingSeeker(path: path, options: options, persistIndex: false)
                return nil
            } catch let error as RecordingAccessError {
                return error
            } catch {
                XCTFail("unexpected \(error)")
                return nil
            }
        }

        guard case .truncated = error(compressed.prefix(compressed.count / 2), "cut.cast.gz") else { return XCTFail("cut in half") }
        guard case .truncated = error(compressed.prefix(compressed.count - 4), "tail.cast.gz") else { return XCTFail("no trailer") }
        var damaged = compressed
        for k in stride(from: compressed.count / 3, to: compressed.count / 3 + 64, by: 1) { damaged[k] ^= 0x5A }
        guard case .corrupt = error(damaged, "bad.cast.gz") else { return XCTFail("damaged") }
        var wrongCRC = compressed
        wrongCRC[compressed.count - 6] ^= 1
        guard case .corrupt = error(wrongCRC, "crc.cast.gz") else { return XCTFail("crc") }
        guard case .notAsciicast = error(Data(), "empty.cast") else { return XCTFail("empty") }
        guard case .notAsciicast = error(Data("hello\nworld\n".utf8), "text.cast") else { return XCTFail("text") }
        guard case .notAsciicast = error(Data("{\"version\": 1}\n".utf8), "v1.cast") else { return XCTFail("v1") }
        var garbage = Self.small.bytes
        garbage.insert(contentsOf: Array("not an event\n".utf8), at: Self.small.lines[100].offset)
        guard case .corrupt(_, let reason) = error(Data(garbage), "garbage.cast") else { return XCTFail("garbage line") }
        XCTAssertTrue(reason.contains("offset \(Self.small.lines[100].offset)"), reason)
        guard case .io = error(Data(), "missing/none.cast") else { return XCTFail("missing") }
        XCTAssertTrue("\(RecordingAccessError.truncated(path: "x"))".contains("truncated"))

        // A torn last line (a crash mid-write) is only left out.
        let torn = try write(Self.small.bytes + Array("[9999.5, \"o\", \"hal".utf8), "torn.cast")
        let seeker = try RecordingSeeker(path: torn, options: options)
        XCTAssertEqual(seeker.index.length, Self.small.bytes.count)
        let last = try seeker.window(at: Self.small.lines.last!.event.time, maxBytes: 1000)
        XCTAssertTrue(last.ended)
        XCTAssertEqual(last.nextOffset, Self.small.bytes.count)

        // A seeker made before the file was cut reports it when reading, without crashing.
        let valid = try RecordingSeeker(path: gz, options: options)
        try compressed.prefix(compressed.count / 2).write(to: URL(fileURLWithPath: gz))
        XCTAssertThrowsError(try valid.window(at: Self.small.lines.last!.event.time - 1, maxBytes: 1000)) { error in
            guard case RecordingAccessError.truncated = error else { return XCTFail("\(error)") }
        }
    }

    func testGzipWithoutAccessPointsIsReadFromTheStart() throws {
        guard FileManager.default.isExecutableFile(atPath: "/bin/gzip") else { throw XCTSkip("no gzip") }
        let plain = try shared().plain
        let (status, compressed) = try run("/bin/gzip", ["-1", "-c", "-n", plain])
        XCTAssertEqual(status, 0)
        let old = directory + "/old.cast.gz"
        try compressed.write(to: URL(fileURLWithPath: old))
        XCTAssertNil(try Gzip.accessPoints(ofFile: old))
        let seeker = try RecordingSeeker(path: old, options: options)
        XCTAssertNil(seeker.accessPoints)
        let reference = try shared().plainSeeker
        XCTAssertEqual(seeker.index.keyframes, reference.index.keyframes)
        let duration = Self.sample.lines.last!.event.time
        var windows: [RecordingWindow] = []
        for time in [0, duration / 2, duration * 0.95] {
            let window = try seeker.window(at: time, maxBytes: 20_000)
            XCTAssertEqual(window, try reference.window(at: time, maxBytes: 20_000))
            windows.append(window)
        }
        assertStartsMatchFullReplay(windows)
        // Concatenated gzip members (gzip's own multi-member format) read as one.
        let (_, second) = try run("/bin/gzip", ["-c", "-n", plain])
        let twice = directory + "/twice.gz"
        try (compressed + second).write(to: URL(fileURLWithPath: twice))
        let reader = try RecordingByteReader(path: twice, offset: Self.sample.bytes.count - 10)
        var across: [UInt8] = []
        while across.count < 20 {
            let got = try reader.read(upTo: 20 - across.count)
            if got.isEmpty { break }
            across += got
        }
        XCTAssertEqual(across, Array(Self.sample.bytes.suffix(10)) + Array(Self.sample.bytes.prefix(10)))
    }

    /// Not a test: timings for a large synthetic recording, run only with
    /// `GATEHOUSE_INDEX_BENCH_MB=200` (in release: `swift test -c release -Xswiftc -enable-testing
    /// --filter RecordingIndexTests/testBenchmarkLargeRecording`).
    func testBenchmarkLargeRecording() throws {
        guard let megabytes = ProcessInfo.processInfo.environment["GATEHOUSE_INDEX_BENCH_MB"].flatMap(Int.init) else {
            throw XCTSkip("set GATEHOUSE_INDEX_BENCH_MB to run")
        }
        let plain = directory + "/big.cast"
        let fd = open(plain, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var encoder = AsciicastEncoder()
        var out = AsciicastEncoder.header(width: 160, height: 48, timestamp: 0, term: "xterm", title: "bench")
        var rng = SplitMix(42)
        var time = 0.0
        var written = 0
        var i = 0
        while written < megabytes << 20 {
            i += 1
            time += Double(rng.next() % 50_000) / 1_000_000
            if i % 3000 == 0 { encoder.marker("$ command \(i)", at: time, to: &out) }
            if i % 20000 == 0 { encoder.resize(columns: 120 + Int(rng.next() % 80), rows: 30 + Int(rng.next() % 30), at: time, to: &out) }
            var chunk: [UInt8] = []
            if i % 700 == 0 { chunk += Array("\u{1B}[?1049h\u{1B}[H\u{1B}[2J".utf8) }
            if i % 700 == 350 { chunk += Array("\u{1B}[?1049l".utf8) }
            let size = 1024 + Int(rng.next() % 15000)
            while chunk.count < size {
                chunk += Array("\u{1B}[3\(rng.next() % 8)m13:\(rng.next() % 60) \u{1B}[0mworker[\(rng.next() % 1000)]: id=\(rng.next()) status=200 ✓\r\n".utf8)
            }
            chunk.withUnsafeBytes { encoder.output($0, at: time, to: &out) }
            if out.count > 1 << 20 {
                _ = out.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
                written += out.count
                out.removeAll(keepingCapacity: true)
            }
        }
        encoder.finish(at: time, to: &out)
        _ = out.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        func clock() -> Double { Date().timeIntervalSince1970 }
        var t = clock()
        try Gzip.compressFile(plain, to: plain + ".gz")
        print("compressFile \(written >> 20) MiB: \(clock() - t) s")
        t = clock()
        let seeker = try RecordingSeeker(path: plain + ".gz")
        print("index built: \(clock() - t) s, \(seeker.index.keyframes.count) keyframes")
        t = clock()
        let loaded = try RecordingSeeker(path: plain + ".gz")
        print("index loaded: \(clock() - t) s")
        for fraction in [0.0, 0.5, 1.0] {
            t = clock()
            let window = try loaded.window(at: loaded.duration * fraction, maxBytes: 1 << 20)
            print("window at \(fraction): \(clock() - t) s, \(window.events.count) bytes")
        }
    }
}
