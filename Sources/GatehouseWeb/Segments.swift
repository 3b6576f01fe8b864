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
struct SegmentedRecording {
    let seeker: RecordingSeeker
    let starts: [Double]

    init(path: String, live: Bool) throws {
        seeker = try RecordingSeeker(path: path, persistIndex: true)
        var starts: [Double] = [0]
        for keyframe in seeker.index.keyframes where keyframe.time > starts.last! + 0.001 && keyframe.time < seeker.duration {
            starts.append(keyframe.time)
        }
        self.starts = starts
    }

    var duration: Double { max(seeker.duration, 0) }

    func index(segmentURL: (Int) -> String) -> [UInt8] {
        var object: [String: Any] = [
            "version": 1,
            "duration": duration,
            "term": ["cols": seeker.index.width, "rows": seeker.index.height],
            "segments": starts.enumerated().map { ["start": $1, "url": segmentURL($0)] as [String: Any] },
        ]
        object["markers"] = seeker.markers.filter { $0.time <= duration }.map { [$0.time, $0.label] as [Any] }
        return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8))
    }

    /// Segment `n` as JSON: `{"snapshot": {"cols", "rows", "init"}, "events": [...]}`.
    func segment(_ n: Int) throws -> [UInt8] {
        let start = starts[n]
        let end = n + 1 < starts.count ? starts[n + 1] : nil
        let last = n + 1 == starts.count
        // Times just under the next start stay under it (the player checks strictly).
        let ceiling = end.map { $0.nextDown } ?? duration
        var window = try seeker.window(at: start, maxBytes: 1 << 20)
        let (columns, rows, screen) = Self.start(window)
        var events: [String] = []
        if n > 0 { events.append(Self.line(start, "o", "")) }
        var lastTime = start
        reading: while true {
            for raw in window.events.split(separator: 0x0A) {
                guard let event = AsciicastReader.parseEvent(Array(raw)) else { continue }
                if let end, event.time >= end { break reading }
                let time = min(max(event.time, lastTime), ceiling)
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
        if events.isEmpty { events.append(Self.line(start, "o", "")) }
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
