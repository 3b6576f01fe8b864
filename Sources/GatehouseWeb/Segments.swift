import Foundation
import GatehouseCore

/// A recording as asciinema-player's segmented format: an index (duration, size, markers and
/// segment start times) and segments (the screen at the segment's start, then its events).
/// Segments begin at the recording index's keyframes, so a player starts or seeks by loading
/// one segment, never the whole recording.
///
/// Player's rules this keeps: segment starts strictly increase from 0; every event of a
/// segment lies in [start, next start); a later segment's first event is at its start; the
/// last segment's last event is at the duration; markers are the recording's `"m"` events.
///
/// With `idle`, pauses longer than that many seconds are shortened to it (the player's own
/// idle limit does not apply to segmented recordings): every time the player sees is mapped,
/// and the index carries the cuts (`gatehouse_idle_cuts`) so the console can map a recording
/// time (a command's offset) to the player's.
struct SegmentedRecording {
    let seeker: RecordingSeeker
    /// Segment starts, in recording time.
    let starts: [Double]
    let idle: IdleCuts?

    init(path: String, idleLimit: Double?) throws {
        seeker = try RecordingSeeker(path: path, persistIndex: true)
        var starts: [Double] = [0]
        for keyframe in seeker.index.keyframes where keyframe.time > starts.last! + 0.001 && keyframe.time < seeker.duration {
            starts.append(keyframe.time)
        }
        self.starts = starts
        idle = try idleLimit.map { try IdleCuts.of(path: path, limit: $0) }
    }

    /// Recording time to player time.
    func map(_ t: Double) -> Double { idle?.map(t) ?? t }

    var duration: Double { map(max(seeker.duration, 0)) }

    func index(segmentURL: (Int) -> String) -> [UInt8] {
        var object: [String: Any] = [
            "version": 1,
            "duration": duration,
            "term": ["cols": seeker.index.width, "rows": seeker.index.height],
            "segments": starts.enumerated().map { ["start": map($1), "url": segmentURL($0)] as [String: Any] },
        ]
        object["markers"] = seeker.markers.map { [map($0.time), $0.label] as [Any] }.filter { ($0[0] as! Double) <= duration }
        if let idle { object["gatehouse_idle_cuts"] = idle.cuts.map { [$0.time, $0.cut] } }
        return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8))
    }

    /// Segment `n` as JSON: `{"snapshot": {"cols", "rows", "init"}, "events": [...]}`.
    func segment(_ n: Int) throws -> [UInt8] {
        let start = starts[n]
        let end = n + 1 < starts.count ? starts[n + 1] : nil
        let mappedEnd = end.map(map)
        let last = n + 1 == starts.count
        // Times just under the next start stay under it (the player checks strictly).
        let ceiling = mappedEnd.map { $0.nextDown } ?? duration
        var window = try seeker.window(at: start, maxBytes: 1 << 20)
        let (columns, rows, screen) = Self.start(window)
        var events: [String] = []
        if n > 0 { events.append(Self.line(map(start), "o", "")) }
        var lastTime = map(start)
        reading: while true {
            for raw in window.events.split(separator: 0x0A) {
                guard let event = AsciicastReader.parseEvent(Array(raw)) else { continue }
                if let end, event.time >= end { break reading }
                let time = min(max(map(event.time), lastTime), ceiling)
                lastTime = time
                let text = String(decoding: event.data, as: UTF8.self)
                if event.code == "r" {
                    // The player takes a resize in a segment as {cols, rows}.
                    let parts = text.split(separator: "x").compactMap { Int($0) }
                    guard parts.count == 2 else { continue }
                    events.append(Self.line(time, "r", ["cols": parts[0], "rows": parts[1]]))
                } else {
                    events.append(Self.line(time, event.code, text))
                }
            }
            guard !window.ended else { break }
            window = try seeker.window(fromOffset: window.nextOffset, maxBytes: 1 << 20)
        }
        if last, lastTime < duration || events.isEmpty { events.append(Self.line(duration, "o", "")) }
        if events.isEmpty { events.append(Self.line(map(start), "o", "")) }
        let snapshot: [String: Any] = ["cols": columns, "rows": rows, "init": n == 0 ? "" : screen]
        let head = (try? JSONSerialization.data(withJSONObject: snapshot)) ?? Data("{}".utf8)
        return Array("{\"snapshot\":".utf8) + Array(head) + Array(",\"events\":[".utf8) + Array(events.joined(separator: ",").utf8) + Array("]}".utf8)
    }

    /// The size and screen drawn by a window's synthetic start.
    private static func start(_ window: RecordingWindow) -> (Int, Int, String) {
        let lines = window.start.split(separator: 0x0A).compactMap { AsciicastReader.parseEvent(Array($0)) }
        let screen = lines.first { $0.code == "o" }.map { String(decoding: $0.data, as: UTF8.self) } ?? ""
        return (window.columns, window.rows, screen)
    }

    private static func line(_ time: Double, _ code: String, _ data: Any) -> String {
        let array: [Any] = [time, code, data]
        return String(decoding: (try? JSONSerialization.data(withJSONObject: array)) ?? Data("[0,\"o\",\"\"]".utf8), as: UTF8.self)
    }
}

/// Where a recording's long pauses are shortened: after each event that follows a pause longer
/// than `limit`, the total cut so far. Found by one pass over the recording, then cached.
struct IdleCuts: Sendable {
    struct Cut: Sendable { var time: Double; var cut: Double }
    let cuts: [Cut]

    func map(_ t: Double) -> Double {
        var lo = 0, hi = cuts.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if cuts[mid].time <= t { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? t : t - cuts[lo - 1].cut
    }

    private static let cache = Cache()

    static func of(path: String, limit: Double) throws -> IdleCuts {
        let stamp = try RecordingIndex.Stamp.of(path)
        let key = "\(path)|\(stamp.size)|\(stamp.modifiedSeconds)|\(stamp.modifiedNanoseconds)|\(limit)"
        if let hit = cache.get(key) { return hit }
        let stream = try RecordingStream(path: path, compressed: path.hasSuffix(".gz"), wholeLinesOnly: true)
        var cuts: [Cut] = []
        var total = 0.0
        var last: Double?
        var header = true
        while let chunk = try stream.next(chunkSize: 256 * 1024) {
            for line in chunk.split(separator: 0x0A) {
                if header { header = false; continue }
                guard let t = Self.time(of: line) else { continue }
                if let last, t - last > limit {
                    total += t - last - limit
                    cuts.append(Cut(time: t, cut: total))
                }
                last = max(last ?? t, t)
            }
        }
        let result = IdleCuts(cuts: cuts)
        cache.put(key, result)
        return result
    }

    /// The time at the start of an event line, `[12.345, ...`, without parsing the rest.
    static func time(of line: ArraySlice<UInt8>) -> Double? {
        guard line.first == UInt8(ascii: "[") else { return nil }
        var end = line.startIndex + 1
        while end < line.endIndex, line[end] != UInt8(ascii: ","), end - line.startIndex < 32 { end += 1 }
        return Double(String(decoding: line[(line.startIndex + 1)..<end], as: UTF8.self).trimmingCharacters(in: .whitespaces))
    }

    /// A few recent results: a replay asks for the index and every segment with the same limit.
    final class Cache: @unchecked Sendable {
        private let lock = NSLock()
        private var entries: [(String, IdleCuts)] = []
        func get(_ key: String) -> IdleCuts? { lock.withLock { entries.first { $0.0 == key }?.1 } }
        func put(_ key: String, _ value: IdleCuts) {
            lock.withLock {
                entries.removeAll { $0.0 == key }
                entries.append((key, value))
                if entries.count > 16 { entries.removeFirst() }
            }
        }
    }
}
