import Foundation
import XCTest
@testable import GatehouseCore

/// The desktop recording format end to end: recorder → file / live hub → reader → canvas, and
/// the MP4 export.
final class DesktopRecordingTests: XCTestCase {
    typealias Rect = DesktopRecorder.Rect

    // MARK: Fixtures

    /// A captured screen as the RDP glue hands it over: BGRX rows with padding at the end of
    /// each row and garbage in the X byte (which must be ignored).
    final class SyntheticScreen {
        let width: Int
        let height: Int
        let stride: Int
        var bytes: [UInt8]
        var random = Xorshift(seed: 0xC0FFEE)

        init(width: Int, height: Int, padding: Int = 24) {
            self.width = width
            self.height = height
            stride = width * 4 + padding
            bytes = [UInt8](repeating: 0, count: stride * height)
            for y in 0..<height {
                for x in 0..<width { bytes[y * stride + x * 4 + 3] = 0x5A }
                for p in (width * 4)..<stride { bytes[y * stride + p] = 0xEE }
            }
        }

        func set(_ x: Int, _ y: Int, r: UInt8, g: UInt8, b: UInt8) {
            let i = y * stride + x * 4
            bytes[i] = b
            bytes[i + 1] = g
            bytes[i + 2] = r
            bytes[i + 3] = UInt8(truncatingIfNeeded: x &* 7 &+ y) // X: anything
        }

        func fill(_ rect: Rect, r: UInt8, g: UInt8, b: UInt8) {
            for y in rect.y..<(rect.y + rect.height) {
                for x in rect.x..<(rect.x + rect.width) { set(x, y, r: r, g: g, b: b) }
            }
        }

        /// Incompressible pixels.
        func noise(_ rect: Rect) {
            for y in rect.y..<(rect.y + rect.height) {
                for x in rect.x..<(rect.x + rect.width) {
                    let v = random.next()
                    set(x, y, r: UInt8(truncatingIfNeeded: v), g: UInt8(truncatingIfNeeded: v >> 8), b: UInt8(truncatingIfNeeded: v >> 16))
                }
            }
        }

        /// Something like an office desktop: a gradient wallpaper, a taskbar, windows with
        /// title bars and lines of "text" (short dark strokes on white).
        func desktop() {
            for y in 0..<height {
                for x in 0..<width {
                    set(x, y, r: UInt8(20 + y * 60 / height), g: UInt8(60 + x * 80 / width), b: UInt8(120 + y * 100 / height))
                }
            }
            fill(Rect(x: 0, y: height - 32, width: width, height: 32), r: 30, g: 30, b: 40)
            let windows = [Rect(x: 40, y: 30, width: width / 2, height: height / 2),
                           Rect(x: width / 3, y: height / 3, width: width / 2, height: height / 2)]
            for w in windows {
                fill(w, r: 250, g: 250, b: 250)
                fill(Rect(x: w.x, y: w.y, width: w.width, height: 24), r: 40, g: 90, b: 200)
                var y = w.y + 36
                while y + 10 < w.y + w.height {
                    var x = w.x + 10
                    while x + 8 < w.x + w.width - 10 {
                        let glyph = font[Int(random.next() % UInt64(font.count))]
                        for (gy, row) in glyph.enumerated() {
                            for gx in 0..<7 where row & (1 << gx) != 0 { set(x + gx, y + gy, r: 20, g: 20, b: 20) }
                        }
                        x += 8
                    }
                    y += 16
                }
            }
        }

        /// 7×11 "glyphs" (a space and 40 fixed bit patterns): text repeats its letters, which
        /// is what deflate finds on real screens.
        lazy var font: [[UInt8]] = {
            var r = Xorshift(seed: 42)
            return [[UInt8](repeating: 0, count: 11)] + (0..<40).map { _ in (0..<11).map { _ in UInt8(truncatingIfNeeded: r.next()) & 0x7F } }
        }()

        /// The RGBA the recording must reproduce.
        func rgba() -> [UInt8] {
            var out = [UInt8](repeating: 255, count: width * height * 4)
            for y in 0..<height {
                for x in 0..<width {
                    let i = y * stride + x * 4, o = (y * width + x) * 4
                    out[o] = bytes[i + 2]
                    out[o + 1] = bytes[i + 1]
                    out[o + 2] = bytes[i]
                }
            }
            return out
        }

        func send(to recorder: DesktopRecorder, dirty: [Rect]) {
            bytes.withUnsafeBytes { raw in
                recorder.frame(bgra: raw.baseAddress!, stride: stride, width: width, height: height, dirty: dirty)
            }
        }

        var whole: Rect { Rect(x: 0, y: 0, width: width, height: height) }
    }

    struct Xorshift {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
    }

    /// Collects what a live watcher receives.
    final class Collector: @unchecked Sendable {
        private let lock = NSLock()
        private var messages: [Data] = []
        var accept: Int
        init(accept: Int = .max) { self.accept = accept }
        func send(_ data: Data) -> Bool {
            lock.withLock {
                guard messages.count < accept else { return false }
                messages.append(data)
                return true
            }
        }
        var received: [Data] { lock.withLock { messages } }
    }

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [String] = []
        func add(_ s: String) { lock.withLock { values.append(s) } }
        var all: [String] { lock.withLock { values } }
    }

    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "gatehouse-desktop-\(UUID().uuidString)"
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func path(_ name: String) -> String { directory + "/rec/" + name }

    func makeRecorder(_ name: String, width: Int, height: Int, live: DesktopLive? = nil, interval: TimeInterval = 10,
                      started: Date = Date(), failures: Flag = Flag()) throws -> DesktopRecorder {
        try DesktopRecorder(path: path(name), width: width, height: height, title: "alice@web01", started: started,
                            live: live, keyframeInterval: interval, onFailure: { failures.add($0) })
    }

    @discardableResult
    func closeAndWait(_ recorder: DesktopRecorder) -> Result<String, Error> {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        recorder.close { result in
            box.set(result)
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        return box.get() ?? .failure(DesktopRecorder.RecorderError.writeFailed("no result"))
    }

    final class ResultBox: @unchecked Sendable {
        private let lock = NSLock()
        private var result: Result<String, Error>?
        func set(_ r: Result<String, Error>) { lock.withLock { result = r } }
        func get() -> Result<String, Error>? { lock.withLock { result } }
    }

    /// Replays records onto a canvas.
    func replay(_ records: [DesktopTimedRecord], header: DesktopHeader) throws -> DesktopCanvas {
        var canvas = try DesktopCanvas(width: header.width, height: header.height)
        for r in records { try canvas.apply(r.record) }
        return canvas
    }

    func tiles(_ records: [DesktopTimedRecord]) -> [DesktopTile] {
        records.compactMap { if case .tile(let t) = $0.record { return t } else { return nil } }
    }

    func keyframeCount(_ records: [DesktopTimedRecord]) -> Int {
        records.filter { if case .keyframe = $0.record { return true } else { return false } }.count
    }

    // MARK: Round trip

    func testRoundTripReproducesTheFinalScreenExactly() throws {
        // Not multiples of 64: the edge cells are partial.
        let screen = SyntheticScreen(width: 330, height: 210)
        let recorder = try makeRecorder("round.gdr", width: 330, height: 210)
        screen.desktop()
        screen.send(to: recorder, dirty: [screen.whole])
        Thread.sleep(forTimeInterval: 0.12)
        // Small scattered updates, some in quick succession (coalesced), some apart.
        for step in 0..<25 {
            let rect = Rect(x: (step * 37) % 300, y: (step * 23) % 190, width: 1 + step % 29, height: 1 + step % 17)
            if step % 3 == 0 { screen.noise(rect) } else { screen.fill(rect, r: UInt8(step * 9), g: 0, b: UInt8(255 - step)) }
            screen.send(to: recorder, dirty: [rect])
            recorder.pointer(x: rect.x, y: rect.y)
            if step % 4 == 0 { Thread.sleep(forTimeInterval: 0.09) }
        }
        recorder.event(["kind": "clipboard", "direction": "upload", "text": "héllo \"world\"\n"])
        // A frame with two overlapping dirty rects and one partly off-screen.
        screen.fill(Rect(x: 300, y: 180, width: 30, height: 30), r: 1, g: 2, b: 3)
        screen.fill(Rect(x: 0, y: 0, width: 10, height: 10), r: 9, g: 8, b: 7)
        screen.send(to: recorder, dirty: [Rect(x: 290, y: 170, width: 100, height: 100), Rect(x: -5, y: -5, width: 15, height: 15),
                                          Rect(x: 0, y: 0, width: 5, height: 5)])
        let expected = screen.rgba()
        XCTAssertEqual(try closeAndWait(recorder).get(), path("round.gdr"))

        let attributes = try FileManager.default.attributesOfItem(atPath: path("round.gdr"))
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let dirAttributes = try FileManager.default.attributesOfItem(atPath: directory + "/rec")
        XCTAssertEqual((dirAttributes[.posixPermissions] as? NSNumber)?.intValue, 0o700)
        XCTAssertEqual(recorder.bytesWritten, (attributes[.size] as? NSNumber)?.intValue)
        XCTAssertEqual(recorder.queuedBytes, 0)

        let reader = try DesktopRecordingReader(path: path("round.gdr"))
        XCTAssertEqual(reader.header.width, 330)
        XCTAssertEqual(reader.header.height, 210)
        XCTAssertEqual(reader.header.title, "alice@web01")
        let records = try reader.readAll()
        XCTAssertEqual(reader.tornTailBytes, 0)
        guard case .keyframe(let first) = records.first?.record else { return XCTFail("no keyframe first") }
        XCTAssertEqual(records.first?.time, 0)
        XCTAssertEqual([first.x, first.y, first.width, first.height], [0, 0, 330, 210])
        XCTAssertEqual(records.last?.record, .end)
        XCTAssertEqual(records.map(\.time), records.map(\.time).sorted(), "times never go back")
        XCTAssertFalse(tiles(records).isEmpty)
        let event = records.compactMap { $0.record.eventFields }.first
        XCTAssertEqual(event?["text"], "héllo \"world\"\n")
        XCTAssertTrue(records.contains { $0.record == .pointer(x: 290, y: 170) } || records.contains {
            if case .pointer = $0.record { return true } else { return false }
        })

        let canvas = try replay(records, header: reader.header)
        XCTAssertEqual(canvas.width, 330)
        XCTAssertEqual(canvas.height, 210)
        XCTAssertTrue(canvas.pixels == expected, "the replayed screen differs from the captured one")
    }

    func testResizeMidRecordingRoundTrips() throws {
        let recorder = try makeRecorder("resize.gdr", width: 200, height: 100)
        let big = SyntheticScreen(width: 200, height: 100)
        big.desktop()
        big.send(to: recorder, dirty: [big.whole])
        // The glue announces the new size, then frames come at it.
        recorder.resize(width: 150, height: 170)
        let small = SyntheticScreen(width: 150, height: 170)
        small.fill(Rect(x: 10, y: 10, width: 50, height: 50), r: 200, g: 100, b: 0)
        small.send(to: recorder, dirty: [Rect(x: 10, y: 10, width: 50, height: 50)])
        Thread.sleep(forTimeInterval: 0.1)
        // And a frame that changes size without an announcement.
        let other = SyntheticScreen(width: 90, height: 64)
        other.noise(other.whole)
        other.send(to: recorder, dirty: [Rect(x: 0, y: 0, width: 1, height: 1)])
        closeAndWait(recorder)

        let reader = try DesktopRecordingReader(path: path("resize.gdr"))
        let records = try reader.readAll()
        let resizes = records.compactMap { r -> [Int]? in
            if case let .resize(w, h) = r.record { return [w, h] } else { return nil }
        }
        XCTAssertEqual(resizes, [[150, 170], [90, 64]])
        // The first screen's tiles come before the first RESIZE.
        let firstResize = records.firstIndex { if case .resize = $0.record { return true } else { return false } } ?? 0
        XCTAssertFalse(tiles(Array(records[..<firstResize])).isEmpty)
        let canvas = try replay(records, header: reader.header)
        XCTAssertEqual([canvas.width, canvas.height], [90, 64])
        XCTAssertTrue(canvas.pixels == other.rgba())
    }

    // MARK: Changed pixels only

    func testUnchangedPixelsInADirtyRectProduceNoTile() throws {
        let screen = SyntheticScreen(width: 256, height: 128)
        let recorder = try makeRecorder("same.gdr", width: 256, height: 128)
        // Black, with garbage in X: nothing differs from the initial black keyframe.
        screen.send(to: recorder, dirty: [screen.whole])
        Thread.sleep(forTimeInterval: 0.15)
        screen.send(to: recorder, dirty: [Rect(x: 3, y: 3, width: 100, height: 100)])
        Thread.sleep(forTimeInterval: 0.15)
        // One pixel in cells 0, 1, 2 and 3 of row 0 (a run of four minus the gap): 0,1 and 3.
        screen.set(5, 5, r: 255, g: 0, b: 0)
        screen.set(70, 60, r: 0, g: 255, b: 0)
        screen.set(200, 1, r: 0, g: 0, b: 255)
        // And one pixel in row 1, whose rect also covers unchanged cells.
        screen.set(130, 127, r: 1, g: 1, b: 1)
        screen.send(to: recorder, dirty: [Rect(x: 0, y: 0, width: 256, height: 128)])
        closeAndWait(recorder)

        let records = try DesktopRecordingReader(path: path("same.gdr")).readAll()
        let found = tiles(records).map { [$0.x, $0.y, $0.width, $0.height] }
        XCTAssertEqual(found, [[0, 0, 128, 64], [192, 0, 64, 64], [128, 64, 64, 64]])
        XCTAssertEqual(keyframeCount(records), 1)
    }

    // MARK: Keyframes

    func testKeyframesAtTheIntervalWhileActiveOnly() throws {
        let screen = SyntheticScreen(width: 128, height: 128)
        let recorder = try makeRecorder("keys.gdr", width: 128, height: 128, interval: 0.25)
        let start = Date()
        var n = 0
        while Date().timeIntervalSince(start) < 1.3 {
            screen.fill(Rect(x: n % 120, y: 0, width: 8, height: 8), r: UInt8(n % 256), g: 1, b: 2)
            screen.send(to: recorder, dirty: [Rect(x: n % 120, y: 0, width: 8, height: 8)])
            n += 1
            Thread.sleep(forTimeInterval: 0.03)
        }
        // Idle: no keyframes for an unchanged screen.
        Thread.sleep(forTimeInterval: 1.0)
        let expected = screen.rgba()
        closeAndWait(recorder)

        let records = try DesktopRecordingReader(path: path("keys.gdr")).readAll()
        let keyTimes = records.compactMap { r -> Int? in if case .keyframe = r.record { return r.time } else { return nil } }
        // 1.3 s of activity at 0.25 s: the first plus about five.
        XCTAssertGreaterThanOrEqual(keyTimes.count, 4, "\(keyTimes)")
        XCTAssertLessThanOrEqual(keyTimes.count, 8, "\(keyTimes)")
        for (a, b) in zip(keyTimes, keyTimes.dropFirst()) { XCTAssertGreaterThanOrEqual(b - a, 240, "\(keyTimes)") }
        let lastChange = records.last { if case .tile = $0.record { return true } else { return false } }?.time ?? 0
        let lastKey = keyTimes.last ?? 0
        XCTAssertLessThan(lastKey, max(lastChange, 0) + 600, "keyframes continued while idle: \(keyTimes)")
        // Every keyframe shows the screen as it was: replay from the last one alone.
        let lastKeyIndex = records.lastIndex { if case .keyframe = $0.record { return true } else { return false } } ?? 0
        let fromLastKey = Array(records[lastKeyIndex...])
        let header = DesktopHeader(width: 1, height: 1, timestamp: 0, title: "")
        XCTAssertTrue(try replay(fromLastKey, header: header).pixels == expected)
    }

    // MARK: Reader robustness

    func testTileFilterRoundTripsAndShrinksFlatAreas() throws {
        var rgba = [UInt8](repeating: 255, count: 64 * 8 * 4)
        for i in stride(from: 0, to: rgba.count, by: 4) { rgba[i] = UInt8(i % 251); rgba[i + 1] = 0x66; rgba[i + 2] = 0xCC }
        let filtered = rgba.withUnsafeBytes { DesktopTileFilter.filter(rgba: $0, width: 64, height: 8) }
        XCTAssertEqual(filtered.count, 64 * 8 * 3)
        XCTAssertEqual(Array(filtered[0..<6]), [0, 0x66, 0xCC, 4, 0, 0], "first pixel as is, then differences")
        XCTAssertEqual(DesktopTileFilter.unfilter(filtered, width: 64, height: 8), rgba)
        let tile = rgba.withUnsafeBytes { DesktopTile(x: 0, y: 0, width: 64, height: 8, rgba: $0) }
        XCTAssertEqual(try tile.pixels(), rgba)
        XCTAssertLessThan(tile.zlib.count, rgba.withUnsafeBytes { DesktopZlib.compress($0).count })
    }

    func testTornTailAndUnknownTypesAreTolerated() throws {
        var data = DesktopHeader(width: 64, height: 64, timestamp: 1_764_000_000, title: "t").encoded()
        data.append(UInt8(ascii: "\n"))
        let black = DesktopCanvas.black(64 * 64)
        data.append(DesktopRecord.keyframe(black.withUnsafeBytes { DesktopTile(x: 0, y: 0, width: 64, height: 64, rgba: $0) }).encoded(time: 0))
        // Unknown type 99 with a payload, and one with none.
        data.append(99); data.appendLE32(5); data.appendLE32(10); data.append(contentsOf: [1, 2, 3, 4, 5])
        data.append(200); data.appendLE32(0); data.appendLE32(11)
        let red: [UInt8] = (0..<(4 * 4 * 4)).map { $0 % 4 == 0 || $0 % 4 == 3 ? 255 : 0 }
        data.append(DesktopRecord.tile(red.withUnsafeBytes { DesktopTile(x: 4, y: 8, width: 4, height: 4, rgba: $0) }).encoded(time: 20))
        data.append(DesktopRecord.pointer(x: 7, y: 9).encoded(time: 30))
        let torn = DesktopRecord.tile(red.withUnsafeBytes { DesktopTile(x: 0, y: 0, width: 4, height: 4, rgba: $0) }).encoded(time: 40)
        data.append(torn.prefix(torn.count - 3))

        for reader in [try DesktopRecordingReader(data: data), try fileReader(data, "torn.gdr")] {
            XCTAssertEqual(reader.header.timestamp, 1_764_000_000)
            let records = try reader.readAll()
            XCTAssertEqual(records.map(\.time), [0, 20, 30])
            XCTAssertEqual(records.last?.record, .pointer(x: 7, y: 9))
            XCTAssertEqual(reader.tornTailBytes, torn.count - 3)
            let canvas = try replay(records, header: reader.header)
            XCTAssertEqual(Array(canvas.pixels[((8 * 64) + 4) * 4..<((8 * 64) + 4) * 4 + 4]), [255, 0, 0, 255])
            XCTAssertEqual(canvas.pointer?.x, 7)
        }

        // Fed a byte at a time, the parser finds the same records.
        var parser = DesktopRecordParser()
        var found: [DesktopTimedRecord] = []
        for byte in data {
            parser.append(Data([byte]))
            while let r = try parser.next() { found.append(r) }
        }
        XCTAssertEqual(found.map(\.time), [0, 20, 30])

        // An absurd length is corruption, not a torn tail.
        var absurd = data.prefix(upTo: data.firstIndex(of: UInt8(ascii: "\n"))! + 1)
        absurd.append(2); absurd.appendLE32(200 << 20); absurd.appendLE32(0)
        XCTAssertThrowsError(try DesktopRecordingReader(data: absurd).readAll()) { error in
            guard case DesktopRecordingError.recordTooLarge(2, 200 << 20, _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("limit"), "\(error)")
        }
        // Not a recording at all.
        XCTAssertThrowsError(try DesktopRecordingReader(data: Data("{\"version\":2}\n".utf8)))
        XCTAssertThrowsError(try DesktopRecordingReader(data: Data()))
        XCTAssertThrowsError(try DesktopRecordingReader(path: directory + "/missing.gdr"))
    }

    func fileReader(_ data: Data, _ name: String) throws -> DesktopRecordingReader {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = directory + "/" + name
        try data.write(to: URL(fileURLWithPath: file))
        return try DesktopRecordingReader(path: file)
    }

    func testMalformedTilesAreErrorsNotCrashes() throws {
        var canvas = try DesktopCanvas(width: 100, height: 50)
        // What a 10x10 tile stores: 10 x 10 x 3 filtered bytes.
        let good = DesktopZlib.compress([UInt8](repeating: 7, count: 10 * 10 * 3))
        func tile(_ x: Int, _ y: Int, _ w: Int, _ h: Int, _ z: Data) -> DesktopRecord {
            .tile(DesktopTile(x: x, y: y, width: w, height: h, zlib: z))
        }
        let bad: [(String, DesktopRecord)] = [
            ("bad zlib", tile(0, 0, 10, 10, Data([0x78, 0x9C, 1, 2, 3, 4, 5]))),
            ("not zlib", tile(0, 0, 10, 10, Data("hello".utf8))),
            ("empty", tile(0, 0, 10, 10, Data())),
            ("truncated", tile(0, 0, 10, 10, good.prefix(good.count / 2))),
            ("too few pixels", tile(0, 0, 10, 11, good)),
            ("too many pixels", tile(0, 0, 10, 9, good)),
            ("right edge", tile(95, 0, 10, 10, good)),
            ("bottom edge", tile(0, 45, 10, 10, good)),
            ("far away", tile(65000, 65000, 10, 10, good)),
            ("zero size", tile(0, 0, 0, 0, DesktopZlib.compress([]))),
            ("keyframe off origin", .keyframe(DesktopTile(x: 1, y: 0, width: 10, height: 10, zlib: good))),
            ("huge keyframe", .keyframe(DesktopTile(x: 0, y: 0, width: 65535, height: 65535, zlib: good))),
            ("bad keyframe", .keyframe(DesktopTile(x: 0, y: 0, width: 10, height: 10, zlib: Data([1, 2, 3])))),
        ]
        for (name, record) in bad {
            XCTAssertThrowsError(try canvas.apply(record), name) { error in
                XCTAssertTrue("\(error)".contains("corrupt"), "\(name): \(error)")
            }
            // A bad record leaves the screen as it was.
            XCTAssertEqual([canvas.width, canvas.height], [100, 50], name)
        }
        XCTAssertTrue(canvas.pixels == DesktopCanvas.black(100 * 50))
        XCTAssertNoThrow(try canvas.apply(tile(90, 40, 10, 10, good)))

        // Payloads too short for their fields, through the parser.
        for type: UInt8 in [1, 2, 3, 4] {
            var data = DesktopHeader(width: 8, height: 8, timestamp: 0, title: "").encoded()
            data.append(UInt8(ascii: "\n"))
            data.append(type); data.appendLE32(3); data.appendLE32(0); data.append(contentsOf: [0, 0, 0])
            XCTAssertThrowsError(try DesktopRecordingReader(data: data).readAll(), "type \(type)") { error in
                XCTAssertTrue("\(error)".contains("corrupt"), "\(error)")
            }
        }
    }

    // MARK: Live

    func testLateWatcherStartsAtAKeyframeAndReachesTheFileScreen() throws {
        let started = Date()
        let live = DesktopLive(header: DesktopRecorder.header(width: 300, height: 200, title: "alice@web01", started: started))
        let early = Collector()
        live.attach { early.send($0) }
        let screen = SyntheticScreen(width: 300, height: 200)
        let recorder = try makeRecorder("live.gdr", width: 300, height: 200, live: live, interval: 0.3, started: started)
        screen.desktop()
        screen.send(to: recorder, dirty: [screen.whole])
        Thread.sleep(forTimeInterval: 0.5) // a keyframe with the desktop on it, then more tiles
        for step in 0..<6 {
            let rect = Rect(x: step * 40, y: step * 20, width: 30, height: 30)
            screen.noise(rect)
            screen.send(to: recorder, dirty: [rect])
            Thread.sleep(forTimeInterval: 0.1)
        }
        let late = Collector()
        let token = live.attach { late.send($0) }
        XCTAssertGreaterThan(token, 0)
        XCTAssertEqual(live.watcherCount, 2)
        for step in 0..<4 {
            let rect = Rect(x: 250 - step * 30, y: step * 30, width: 40, height: 20)
            screen.fill(rect, r: 0, g: UInt8(step * 50), b: 99)
            screen.send(to: recorder, dirty: [rect])
            Thread.sleep(forTimeInterval: 0.1)
        }
        closeAndWait(recorder)
        XCTAssertTrue(live.isEnded)
        XCTAssertEqual(live.watcherCount, 0)

        let header = try DesktopHeader.parse(live.header)
        XCTAssertEqual(header.width, 300)
        let expected = screen.rgba()
        let fileRecords = try DesktopRecordingReader(path: path("live.gdr")).readAll()
        XCTAssertTrue(try replay(fileRecords, header: header).pixels == expected)

        for (name, collector) in [("early", early), ("late", late)] {
            var parser = DesktopRecordParser(header: header)
            var records: [DesktopTimedRecord] = []
            for message in collector.received {
                parser.append(message)
                while let r = try parser.next() { records.append(r) }
                XCTAssertEqual(parser.pendingBytes, 0, "\(name): messages hold whole records")
            }
            guard case .keyframe = records.first?.record else { return XCTFail("\(name) did not start at a keyframe") }
            XCTAssertEqual(records.last?.record, .end, name)
            XCTAssertTrue(try replay(records, header: header).pixels == expected, name)
        }
        // The late one started at a later keyframe than the file's first.
        var parser = DesktopRecordParser(header: header)
        parser.append(late.received[0])
        XCTAssertGreaterThan(try parser.next()?.time ?? 0, 0)

        // Attaching after the end still gives a whole picture, and END.
        let after = Collector()
        live.attach { after.send($0) }
        XCTAssertEqual(live.watcherCount, 0)
        XCTAssertFalse(after.received.isEmpty)
    }

    func testWatcherThatFailsIsDetachedOthersContinue() throws {
        let live = DesktopLive(header: Data("{}".utf8))
        let key = DesktopRecord.keyframe(DesktopTile(x: 0, y: 0, width: 1, height: 1, zlib: DesktopZlib.compress([0, 0, 0])))
        live.publish(key.encoded(time: 0), keyframe: true)
        let slow = Collector(accept: 2)
        let good = Collector()
        let slowToken = live.attach { slow.send($0) }
        let goodToken = live.attach { good.send($0) }
        XCTAssertNotEqual(slowToken, goodToken)
        XCTAssertEqual(live.watcherCount, 2)
        for t in 1...3 { live.publish(DesktopRecord.pointer(x: t, y: t).encoded(time: UInt32(t)), keyframe: false) }
        XCTAssertEqual(live.watcherCount, 1)
        XCTAssertEqual(slow.received.count, 2)
        XCTAssertEqual(good.received.count, 4)
        // Detach by token.
        live.detach(goodToken)
        XCTAssertEqual(live.watcherCount, 0)
        live.publish(DesktopRecord.pointer(x: 9, y: 9).encoded(time: 9), keyframe: false)
        XCTAssertEqual(good.received.count, 4)
        // A watcher gone on its first message (the backlog) is never kept.
        live.attach { _ in false }
        XCTAssertEqual(live.watcherCount, 0)
        // end() adds END when the recorder did not, and detaches everyone.
        let last = Collector()
        live.attach { last.send($0) }
        live.end()
        XCTAssertTrue(live.isEnded)
        XCTAssertEqual(live.watcherCount, 0)
        var parser = DesktopRecordParser(header: DesktopHeader(width: 1, height: 1, timestamp: 0, title: ""))
        last.received.forEach { parser.append($0) }
        var records: [DesktopRecord] = []
        while let r = try parser.next() { records.append(r.record) }
        XCTAssertEqual(records.first, key)
        XCTAssertEqual(records.last, .end)
        XCTAssertEqual(records.count, 1 + 4 + 1)
    }

    func testBacklogPastTheLimitAsksForAKeyframe() throws {
        let live = DesktopLive(header: Data("{}".utf8))
        let asked = Flag()
        live.requestKeyframe = { asked.add("key") }
        live.publish(DesktopRecord.keyframe(DesktopTile(x: 0, y: 0, width: 1, height: 1, zlib: Data())).encoded(time: 0), keyframe: true)
        let chunk = DesktopRecord.event(Data(repeating: 0x20, count: 1 << 20)).encoded(time: 1)
        for _ in 0..<9 { live.publish(chunk, keyframe: false) }
        XCTAssertEqual(asked.all.count, 1, "asked once, not on every publish")
        for _ in 0..<3 { live.publish(chunk, keyframe: false) }
        XCTAssertEqual(asked.all.count, 1)
        live.publish(DesktopRecord.keyframe(DesktopTile(x: 0, y: 0, width: 1, height: 1, zlib: Data())).encoded(time: 2), keyframe: true)
        let watcher = Collector()
        live.attach { watcher.send($0) }
        XCTAssertEqual(watcher.received.map(\.count), [DesktopRecordType.headerSize + 8])
        for _ in 0..<9 { live.publish(chunk, keyframe: false) }
        XCTAssertEqual(asked.all.count, 2)
    }

    func testRecorderAnswersTheHubsKeyframeRequest() throws {
        let live = DesktopLive(header: Data("{}".utf8))
        let recorder = try makeRecorder("ask.gdr", width: 64, height: 64, live: live)
        let watcher = Collector()
        live.attach { watcher.send($0) }
        live.requestKeyframe?()
        Thread.sleep(forTimeInterval: 0.3)
        closeAndWait(recorder)
        let records = try DesktopRecordingReader(path: path("ask.gdr")).readAll()
        XCTAssertEqual(keyframeCount(records), 2)
    }

    // MARK: Disk failure

    func testWriteFailureIsReportedOnceAndKeepsWhatWasWritten() throws {
        let failures = Flag()
        let screen = SyntheticScreen(width: 256, height: 256)
        let recorder = try makeRecorder("full.gdr", width: 256, height: 256, failures: failures)
        // A file size limit stands in for a full disk (EFBIG instead of ENOSPC).
        signal(SIGXFSZ, SIG_IGN)
        var saved = rlimit()
        getrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
        var limit = saved
        limit.rlim_cur = 300_000
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
        defer { setrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved) }
        for _ in 0..<8 {
            screen.noise(screen.whole) // 256 KiB of incompressible pixels a time
            screen.send(to: recorder, dirty: [screen.whole])
            Thread.sleep(forTimeInterval: 0.1)
        }
        let result = closeAndWait(recorder)
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
        XCTAssertThrowsError(try result.get()) { error in
            XCTAssertTrue("\(error)".contains("cannot write desktop recording"), "\(error)")
        }
        XCTAssertEqual(failures.all.count, 1, "\(failures.all)")
        XCTAssertTrue(failures.all.first?.contains(path("full.gdr")) ?? false)
        // Close again: same answer, no second report.
        XCTAssertThrowsError(try closeAndWait(recorder).get())
        XCTAssertEqual(failures.all.count, 1)
        // What reached the disk still reads.
        let reader = try DesktopRecordingReader(path: path("full.gdr"))
        let records = try reader.readAll()
        XCTAssertFalse(records.isEmpty)
        XCTAssertNoThrow(try replay(records, header: reader.header))
    }

    // MARK: Export

    func testMP4ExportHasOneFramePerTick() throws {
        guard DesktopVideoExporter.resolve("ffmpeg") != nil, DesktopVideoExporter.resolve("ffprobe") != nil else {
            throw XCTSkip("ffmpeg is not installed")
        }
        let screen = SyntheticScreen(width: 201, height: 151) // odd: padded for yuv420p
        let recorder = try makeRecorder("video.gdr", width: 201, height: 151)
        screen.desktop()
        screen.send(to: recorder, dirty: [screen.whole])
        for step in 0..<8 {
            Thread.sleep(forTimeInterval: 0.2)
            let rect = Rect(x: step * 20, y: step * 15, width: 30, height: 30)
            screen.noise(rect)
            screen.send(to: recorder, dirty: [rect])
        }
        recorder.resize(width: 320, height: 100) // later frames are scaled into the first size
        let wide = SyntheticScreen(width: 320, height: 100)
        wide.desktop()
        wide.send(to: recorder, dirty: [wide.whole])
        Thread.sleep(forTimeInterval: 0.4)
        closeAndWait(recorder)

        let records = try DesktopRecordingReader(path: path("video.gdr")).readAll()
        let duration = Double(records.last?.time ?? 0) / 1000
        let output = directory + "/video.mp4"
        try DesktopVideoExporter.exportMP4(recording: path("video.gdr"), to: output, fps: 10)
        let probe = try run("ffprobe", ["-v", "error", "-count_frames", "-select_streams", "v:0",
                                        "-show_entries", "stream=nb_read_frames,width,height", "-of", "csv=p=0", output])
        let fields = probe.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").compactMap { Int($0) }
        XCTAssertEqual(fields.count, 3, probe)
        XCTAssertEqual(Array(fields.prefix(2)), [202, 152], "padded to even sizes")
        let frames = fields.last ?? 0
        XCTAssertEqual(Double(frames), duration * 10, accuracy: 1.0, "\(frames) frames for \(duration) s")

        // Missing or failing ffmpeg: clear errors.
        XCTAssertThrowsError(try DesktopVideoExporter.exportMP4(recording: path("video.gdr"), to: output, ffmpeg: "/nonexistent/ffmpeg")) {
            XCTAssertTrue("\($0)".contains("not found"), "\($0)")
        }
        XCTAssertThrowsError(try DesktopVideoExporter.exportMP4(recording: path("video.gdr"), to: directory + "/no/such/dir/v.mp4")) {
            XCTAssertTrue("\($0)".contains("ffmpeg:"), "ffmpeg's own message: \($0)")
        }
        XCTAssertThrowsError(try DesktopVideoExporter.exportMP4(recording: directory + "/missing.gdr", to: output))
    }

    func run(_ tool: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DesktopVideoExporter.resolve(tool) ?? tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Compression level

    /// Not a pass/fail test: the numbers behind `DesktopZlib.tileLevel` and `keyframeLevel`.
    func testCompressionLevels() throws {
        let screen = SyntheticScreen(width: 1024, height: 768)
        screen.desktop()
        let rgba = screen.rgba()
        var report: [String] = []
        for level: Int32 in [1, 3, 6, 9] {
            let start = Date()
            var size = 0
            for _ in 0..<3 { size = DesktopZlib.compress(rgba, level: level).count }
            let ms = Date().timeIntervalSince(start) / 3 * 1000
            // The same screen as a full-screen change: one tile per 64-pixel cell row.
            let stripStart = Date()
            var strips = 0
            for y in stride(from: 0, to: 768, by: 64) {
                strips += rgba[(y * 1024 * 4)..<((y + 64) * 1024 * 4)].withUnsafeBytes { DesktopZlib.compress($0, level: level).count }
            }
            let stripMs = Date().timeIntervalSince(stripStart) * 1000
            report.append("level \(level): \(size) bytes, \(String(format: "%.1f", ms)) ms (as 12 tiles: \(strips) bytes, \(String(format: "%.1f", stripMs)) ms)")
            XCTAssertEqual(try DesktopZlib.inflate(DesktopZlib.compress(rgba, level: level), expected: rgba.count), rgba)
        }
        print("1024x768 keyframe (raw \(rgba.count) bytes): " + report.joined(separator: "; "))
    }
}
