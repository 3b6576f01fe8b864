// A VT100/xterm screen model: the visible screen only, no scrollback, no attributes.
//
// It reads terminal output (what the asset sends) and keeps the characters on the screen, so that the command a user
// types can be read off the prompt line and live watchers can be given the current screen. It implements the xterm
// subset that shells (bash, zsh, fish), vim, less and top use. Unknown or malformed sequences are consumed and
// ignored; no input makes it crash, loop or buffer without bound.
//
// Storage: one UInt32 per cell in a flat array, rows reached through a row map so that scrolling moves row numbers,
// not cells. A cell holds a Unicode scalar; the right half of a wide character holds `continuation`; a character with
// combining marks holds `clusterFlag | index` into a small interned table of scalar sequences.

public struct TerminalScreen: Sendable {
    /// A cell on the visible screen, 0-based.
    public struct Position: Equatable, Hashable, Sendable {
        public var row: Int
        public var column: Int

        public init(row: Int, column: Int) {
            self.row = row
            self.column = column
        }
    }

    /// Sizes are clamped to these, so that a hostile window-change request cannot allocate without bound.
    public static let maxColumns = 2000
    public static let maxRows = 1000

    static let maxParameters = 32
    static let maxParameterValue = 65535
    /// OSC, DCS, APC, PM and SOS payloads are not stored; one longer than this is abandoned (back to ground state).
    static let maxStringLength = 64 * 1024
    /// Combining marks kept on one cell; more are dropped.
    static let maxCombiningMarks = 8
    /// Distinct characters-with-marks on screen; beyond this (after collecting unused ones) marks are dropped.
    static let maxClusters = 4096

    static let blank: UInt32 = 0x20
    static let continuation: UInt32 = 0x0020_0000 // above any scalar
    static let clusterFlag: UInt32 = 0x4000_0000
    static let replacement: UInt32 = 0xFFFD

    struct Buffer: Sendable {
        /// rows * columns cells, physical row p at p * columns.
        var cells: [UInt32]
        /// Visible row -> physical row.
        var rowMap: [Int]
        /// Per physical row: the row's text continues on the next row by autowrap.
        var wrapped: [Bool]

        init(columns: Int, rows: Int) {
            cells = Array(repeating: TerminalScreen.blank, count: columns * rows)
            rowMap = Array(0..<rows)
            wrapped = Array(repeating: false, count: rows)
        }
    }

    struct SavedCursor: Sendable {
        var row = 0
        var column = 0
        var pendingWrap = false
        var originMode = false
    }

    enum State: UInt8, Sendable {
        case ground, escape, escapeIntermediate, csiEntry, csiParam, csiIntermediate, csiIgnore
        case oscString, controlString, stringEscape
    }

    public internal(set) var columns: Int
    public internal(set) var rows: Int
    public internal(set) var scrollCount = 0

    var buffer: Buffer
    /// The buffer not shown: the main one while the alternate screen is active, else the alternate one (if ever used).
    var inactive: Buffer?
    var alternateActive = false

    var cursorRow = 0
    var cursorColumn = 0
    /// xterm's "last column flag": a character was printed in the last column; the next one wraps first.
    var pendingWrap = false
    var scrollTop = 0
    var scrollBottom: Int
    var autowrap = true
    var originMode = false
    var insertMode = false
    var cursorVisibleFlag = true
    var savedMain = SavedCursor()
    var savedAlternate = SavedCursor()
    var tabStops: [Bool]
    /// For REP (CSI b).
    var lastGraphic: UInt32 = 0

    // Parser.
    var state = State.ground
    var parameters: [Int]
    var parameterCount = 0
    var parameterOverflow = false
    var privateMarker: UInt8 = 0
    var intermediate: UInt8 = 0
    var stringLength = 0
    var stringIsOSC = false

    // UTF-8 decoder (ground state only).
    var utf8Code: UInt32 = 0
    var utf8Remaining = 0
    var utf8Lower: UInt8 = 0x80
    var utf8Upper: UInt8 = 0xBF

    // Characters with combining marks.
    var clusters: [[UInt32]] = []
    var clusterIDs: [[UInt32]: Int] = [:]

    public init(columns: Int, rows: Int) {
        let (c, r) = Self.clampedSize(columns: columns, rows: rows)
        self.columns = c
        self.rows = r
        buffer = Buffer(columns: c, rows: r)
        scrollBottom = r - 1
        tabStops = Self.defaultTabStops(c)
        parameters = Array(repeating: 0, count: Self.maxParameters)
    }

    static func clampedSize(columns: Int, rows: Int) -> (Int, Int) {
        (columns <= 0 ? 80 : min(columns, maxColumns), rows <= 0 ? 24 : min(rows, maxRows))
    }

    static func defaultTabStops(_ columns: Int) -> [Bool] {
        (0..<columns).map { $0 % 8 == 0 }
    }

    // MARK: - Public state

    public var cursor: Position { Position(row: cursorRow, column: cursorColumn) }
    public var isAlternateScreen: Bool { alternateActive }
    public var isCursorVisible: Bool { cursorVisibleFlag }

    /// Visible row `row`'s text with trailing blanks trimmed; a wide character appears once. "" outside the screen.
    public func line(_ row: Int) -> String {
        guard row >= 0, row < rows else { return "" }
        let base = buffer.rowMap[row] * columns
        var end = columns
        while end > 0, buffer.cells[base + end - 1] == Self.blank { end -= 1 }
        var text = String.UnicodeScalarView()
        for column in 0..<end { appendCell(buffer.cells[base + column], to: &text) }
        return String(text)
    }

    public var lines: [String] { (0..<rows).map { line($0) } }

    /// Text from `start` to `end` (exclusive) in reading order. A row that wrapped joins the next without a newline;
    /// other rows end with "\n" and lose their trailing blanks (as does the last piece). Positions outside the screen
    /// clamp to it (a row past the bottom means the end of the screen).
    public func text(from start: Position, to end: Position) -> String {
        let (startRow, startColumn) = clamped(start)
        let (endRow, endColumn) = clamped(end)
        guard startRow < endRow || (startRow == endRow && startColumn < endColumn) else { return "" }
        var text = String.UnicodeScalarView()
        var column = startColumn
        for row in startRow...endRow {
            let physical = buffer.rowMap[row]
            let base = physical * columns
            let continues = row < endRow
            let joins = continues && buffer.wrapped[physical]
            var stop = continues ? columns : endColumn
            if !joins {
                while stop > column, buffer.cells[base + stop - 1] == Self.blank { stop -= 1 }
            }
            if column < stop {
                for c in column..<stop { appendCell(buffer.cells[base + c], to: &text) }
            }
            if continues, !joins { text.append("\n") }
            column = 0
        }
        return String(text)
    }

    private func clamped(_ position: Position) -> (Int, Int) {
        if position.row < 0 { return (0, 0) }
        if position.row >= rows { return (rows - 1, columns) }
        return (position.row, min(max(position.column, 0), columns))
    }

    private func appendCell(_ cell: UInt32, to text: inout String.UnicodeScalarView) {
        if cell == Self.continuation { return }
        if cell & Self.clusterFlag != 0 {
            let index = Int(cell & ~Self.clusterFlag)
            if index < clusters.count {
                for scalar in clusters[index] { text.append(Unicode.Scalar(scalar) ?? "\u{FFFD}") }
            }
            return
        }
        text.append(Unicode.Scalar(cell) ?? "\u{FFFD}")
    }

    // MARK: - Feeding

    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        let count = bytes.count
        var i = 0
        while i < count {
            switch state {
            case .ground:
                let byte = bytes[i]
                if byte >= 0x80 {
                    i += 1
                    decodeUTF8(byte)
                    continue
                }
                if utf8Remaining != 0 {
                    // A truncated sequence: one replacement, then this byte again.
                    utf8Remaining = 0
                    printScalar(Self.replacement)
                    continue
                }
                if byte &- 0x20 < 0x5F {
                    var j = i + 1
                    while j < count, bytes[j] &- 0x20 < 0x5F { j += 1 }
                    printASCII(bytes, from: i, to: j)
                    i = j
                    continue
                }
                i += 1
                if byte == 0x1B {
                    enterEscape()
                } else if byte < 0x20 {
                    execute(byte)
                } // DEL is ignored
            case .oscString, .controlString:
                // Skip to the next byte that can end the string, within the length budget.
                let budget = Self.maxStringLength - stringLength
                let limit = count - i > budget ? i + budget : count
                var j = i
                while j < limit {
                    let byte = bytes[j]
                    if byte == 0x1B || byte == 0x07 || byte == 0x18 || byte == 0x1A { break }
                    j += 1
                }
                stringLength += j - i
                i = j
                guard i < count else { break }
                let byte = bytes[i]
                switch byte {
                case 0x1B:
                    state = .stringEscape
                case 0x07:
                    if stringIsOSC { state = .ground }
                case 0x18, 0x1A:
                    state = .ground
                default:
                    // Over the cap: give up on the string; this byte is processed in ground state.
                    state = .ground
                    continue
                }
                i += 1
            case .stringEscape:
                let byte = bytes[i]
                if byte == 0x5C { // ESC \ (ST)
                    i += 1
                    state = .ground
                } else {
                    // The ESC ended the string and starts a new sequence with this byte.
                    enterEscape()
                }
            default:
                let byte = bytes[i]
                i += 1
                sequenceByte(byte)
            }
        }
    }

    private mutating func enterEscape() {
        state = .escape
        intermediate = 0
    }

    private mutating func decodeUTF8(_ byte: UInt8) {
        if utf8Remaining == 0 {
            switch byte {
            case 0xC2...0xDF:
                utf8Remaining = 1
                utf8Code = UInt32(byte & 0x1F)
            case 0xE0...0xEF:
                utf8Remaining = 2
                utf8Code = UInt32(byte & 0x0F)
                utf8Lower = byte == 0xE0 ? 0xA0 : 0x80 // no overlongs
                utf8Upper = byte == 0xED ? 0x9F : 0xBF // no surrogates
            case 0xF0...0xF4:
                utf8Remaining = 3
                utf8Code = UInt32(byte & 0x07)
                utf8Lower = byte == 0xF0 ? 0x90 : 0x80
                utf8Upper = byte == 0xF4 ? 0x8F : 0xBF // nothing above U+10FFFF
            default:
                printScalar(Self.replacement)
            }
            return
        }
        guard byte >= utf8Lower, byte <= utf8Upper else {
            utf8Remaining = 0
            utf8Lower = 0x80
            utf8Upper = 0xBF
            printScalar(Self.replacement)
            decodeUTF8(byte) // may start a new sequence
            return
        }
        utf8Lower = 0x80
        utf8Upper = 0xBF
        utf8Code = utf8Code << 6 | UInt32(byte & 0x3F)
        utf8Remaining -= 1
        if utf8Remaining == 0 { printScalar(utf8Code) }
    }

    /// A byte in the escape, CSI or escape-intermediate states.
    private mutating func sequenceByte(_ byte: UInt8) {
        if byte == 0x1B {
            enterEscape()
            return
        }
        if byte == 0x18 || byte == 0x1A { // CAN, SUB: abandon the sequence
            state = .ground
            return
        }
        if byte < 0x20 { // C0 controls act inside sequences
            execute(byte)
            return
        }
        if byte >= 0x7F { return } // DEL and non-ASCII bytes are ignored inside sequences
        switch state {
        case .escape:
            if byte <= 0x2F {
                intermediate = byte
                state = .escapeIntermediate
            } else {
                state = .ground
                escapeDispatch(byte)
            }
        case .escapeIntermediate:
            // Charset designations (ESC ( B), ESC # 8, ESC SP F ...: the final byte ends them; all ignored.
            if byte > 0x2F { state = .ground }
        case .csiEntry, .csiParam:
            switch byte {
            case 0x30...0x39:
                if parameterCount == 0 {
                    parameterCount = 1
                    parameters[0] = 0
                }
                if !parameterOverflow {
                    let index = parameterCount - 1
                    parameters[index] = min(parameters[index] * 10 + Int(byte - 0x30), Self.maxParameterValue)
                }
                state = .csiParam
            case 0x3A, 0x3B: // ':' sub-parameters are treated as parameters
                if parameterCount == 0 {
                    parameterCount = 1
                    parameters[0] = 0
                }
                if parameterCount < Self.maxParameters {
                    parameters[parameterCount] = 0
                    parameterCount += 1
                } else {
                    parameterOverflow = true
                }
                state = .csiParam
            case 0x3C...0x3F:
                if state == .csiEntry {
                    privateMarker = byte
                    state = .csiParam
                } else {
                    state = .csiIgnore
                }
            case 0x20...0x2F:
                intermediate = byte
                state = .csiIntermediate
            default:
                state = .ground
                csiDispatch(byte)
            }
        case .csiIntermediate:
            switch byte {
            case 0x20...0x2F: intermediate = byte
            case 0x30...0x3F: state = .csiIgnore
            default:
                state = .ground
                csiDispatch(byte)
            }
        case .csiIgnore:
            if byte >= 0x40 { state = .ground }
        default:
            state = .ground
        }
    }

    private mutating func execute(_ byte: UInt8) {
        switch byte {
        case 0x08: // BS
            pendingWrap = false
            if cursorColumn > 0 { cursorColumn -= 1 }
        case 0x09: // HT
            tabForward(1)
        case 0x0A, 0x0B, 0x0C: // LF, VT, FF
            index()
        case 0x0D: // CR
            cursorColumn = 0
            pendingWrap = false
        default: // BEL, SO, SI, NUL, ...
            break
        }
    }

    private mutating func escapeDispatch(_ final: UInt8) {
        switch final {
        case UInt8(ascii: "["):
            state = .csiEntry
            parameterCount = 0
            parameterOverflow = false
            privateMarker = 0
            intermediate = 0
        case UInt8(ascii: "]"):
            state = .oscString
            stringIsOSC = true
            stringLength = 0
        case UInt8(ascii: "P"), UInt8(ascii: "X"), UInt8(ascii: "^"), UInt8(ascii: "_"): // DCS, SOS, PM, APC
            state = .controlString
            stringIsOSC = false
            stringLength = 0
        case UInt8(ascii: "7"):
            saveCursor()
        case UInt8(ascii: "8"):
            restoreCursor()
        case UInt8(ascii: "D"):
            index()
        case UInt8(ascii: "E"):
            index()
            cursorColumn = 0
        case UInt8(ascii: "M"):
            reverseIndex()
        case UInt8(ascii: "H"):
            tabStops[cursorColumn] = true
        case UInt8(ascii: "c"):
            fullReset()
        default: // = > \ and the rest
            break
        }
    }

    @inline(__always)
    private func parameter(_ index: Int, default value: Int = 1) -> Int {
        guard index < parameterCount else { return value }
        let p = parameters[index]
        return p == 0 ? value : p
    }

    private mutating func csiDispatch(_ final: UInt8) {
        if intermediate != 0 {
            if intermediate == UInt8(ascii: "!"), final == UInt8(ascii: "p"), privateMarker == 0 { softReset() }
            return // DECSCUSR (SP q), SL/SR, DECRQM ($ p) ... are ignored
        }
        if privateMarker != 0 {
            switch (privateMarker, final) {
            case (UInt8(ascii: "?"), UInt8(ascii: "h")): setPrivateModes(true)
            case (UInt8(ascii: "?"), UInt8(ascii: "l")): setPrivateModes(false)
            case (UInt8(ascii: "?"), UInt8(ascii: "J")): eraseDisplay(parameter(0, default: 0)) // DECSED
            case (UInt8(ascii: "?"), UInt8(ascii: "K")): eraseLine(parameter(0, default: 0)) // DECSEL
            default: break // CSI > c, CSI > 4;1 m, CSI ? u, CSI = ... and the rest
            }
            return
        }
        switch final {
        case UInt8(ascii: "A"): // CUU
            let limit = cursorRow >= scrollTop ? scrollTop : 0
            cursorRow = max(limit, cursorRow - parameter(0))
            pendingWrap = false
        case UInt8(ascii: "B"), UInt8(ascii: "e"): // CUD, VPR
            let limit = cursorRow <= scrollBottom ? scrollBottom : rows - 1
            cursorRow = min(limit, cursorRow + parameter(0))
            pendingWrap = false
        case UInt8(ascii: "C"), UInt8(ascii: "a"): // CUF, HPR
            cursorColumn = min(columns - 1, cursorColumn + parameter(0))
            pendingWrap = false
        case UInt8(ascii: "D"): // CUB
            cursorColumn = max(0, cursorColumn - parameter(0))
            pendingWrap = false
        case UInt8(ascii: "E"): // CNL
            let limit = cursorRow <= scrollBottom ? scrollBottom : rows - 1
            cursorRow = min(limit, cursorRow + parameter(0))
            cursorColumn = 0
            pendingWrap = false
        case UInt8(ascii: "F"): // CPL
            let limit = cursorRow >= scrollTop ? scrollTop : 0
            cursorRow = max(limit, cursorRow - parameter(0))
            cursorColumn = 0
            pendingWrap = false
        case UInt8(ascii: "G"), UInt8(ascii: "`"): // CHA, HPA
            cursorColumn = min(parameter(0), columns) - 1
            pendingWrap = false
        case UInt8(ascii: "H"), UInt8(ascii: "f"): // CUP, HVP
            moveCursor(row: parameter(0) - 1, column: parameter(1) - 1)
        case UInt8(ascii: "d"): // VPA
            moveCursor(row: parameter(0) - 1, column: cursorColumn)
        case UInt8(ascii: "I"): // CHT
            tabForward(parameter(0))
        case UInt8(ascii: "Z"): // CBT
            tabBackward(parameter(0))
        case UInt8(ascii: "J"):
            eraseDisplay(parameter(0, default: 0))
        case UInt8(ascii: "K"):
            eraseLine(parameter(0, default: 0))
        case UInt8(ascii: "@"):
            insertBlanks(parameter(0))
        case UInt8(ascii: "P"):
            deleteCharacters(parameter(0))
        case UInt8(ascii: "X"): // ECH
            pendingWrap = false
            clearCells(row: cursorRow, from: cursorColumn, to: min(columns, cursorColumn + parameter(0)))
        case UInt8(ascii: "L"): // IL
            if cursorRow >= scrollTop, cursorRow <= scrollBottom {
                scrollDown(top: cursorRow, bottom: scrollBottom, count: parameter(0))
                cursorColumn = 0
                pendingWrap = false
            }
        case UInt8(ascii: "M"): // DL
            if cursorRow >= scrollTop, cursorRow <= scrollBottom {
                scrollUp(top: cursorRow, bottom: scrollBottom, count: parameter(0))
                cursorColumn = 0
                pendingWrap = false
            }
        case UInt8(ascii: "S"): // SU
            scrollUp(top: scrollTop, bottom: scrollBottom, count: parameter(0))
        case UInt8(ascii: "T"): // SD; with more parameters it is xterm's mouse highlight tracking
            if parameterCount <= 1 { scrollDown(top: scrollTop, bottom: scrollBottom, count: parameter(0)) }
        case UInt8(ascii: "b"): // REP
            if lastGraphic != 0 {
                let count = min(parameter(0), columns * rows)
                for _ in 0..<count { printScalar(lastGraphic) }
            }
        case UInt8(ascii: "g"): // TBC
            switch parameter(0, default: 0) {
            case 0: tabStops[cursorColumn] = false
            case 3: for c in 0..<columns { tabStops[c] = false }
            default: break
            }
        case UInt8(ascii: "h"), UInt8(ascii: "l"): // SM, RM: only IRM
            for k in 0..<min(parameterCount, Self.maxParameters) where parameters[k] == 4 {
                insertMode = final == UInt8(ascii: "h")
            }
        case UInt8(ascii: "r"): // DECSTBM
            let top = parameter(0) - 1
            let bottom = min(parameter(1, default: rows), rows) - 1
            if top < bottom {
                scrollTop = top
                scrollBottom = bottom
                moveCursor(row: 0, column: 0)
            }
        case UInt8(ascii: "s"): // SCOSC
            saveCursor()
        case UInt8(ascii: "u"): // SCORC
            restoreCursor()
        default: // m (SGR), n, c, t, q, ... ignored
            break
        }
    }

    private mutating func setPrivateModes(_ on: Bool) {
        for k in 0..<min(parameterCount, Self.maxParameters) {
            switch parameters[k] {
            case 6:
                originMode = on
                moveCursor(row: 0, column: 0)
            case 7:
                autowrap = on
            case 25:
                cursorVisibleFlag = on
            case 47:
                if on { switchToAlternate(clear: false) } else { switchToMain() }
            case 1047:
                if on {
                    switchToAlternate(clear: false)
                } else {
                    if alternateActive { eraseAll() }
                    switchToMain()
                }
            case 1048:
                if on { saveCursor() } else { restoreCursor() }
            case 1049:
                if on {
                    saveCursor()
                    switchToAlternate(clear: true)
                } else {
                    switchToMain()
                    restoreCursor()
                }
            default: // 1 (DECCKM), 12, 1000-1006 (mouse), 2004 (bracketed paste), ...
                break
            }
        }
    }

    // MARK: - Cursor

    private mutating func moveCursor(row: Int, column: Int) {
        if originMode {
            cursorRow = min(max(row + scrollTop, scrollTop), scrollBottom)
        } else {
            cursorRow = min(max(row, 0), rows - 1)
        }
        cursorColumn = min(max(column, 0), columns - 1)
        pendingWrap = false
    }

    private mutating func saveCursor() {
        let saved = SavedCursor(row: cursorRow, column: cursorColumn, pendingWrap: pendingWrap, originMode: originMode)
        if alternateActive { savedAlternate = saved } else { savedMain = saved }
    }

    private mutating func restoreCursor() {
        let saved = alternateActive ? savedAlternate : savedMain
        cursorRow = min(max(saved.row, 0), rows - 1)
        cursorColumn = min(max(saved.column, 0), columns - 1)
        originMode = saved.originMode
        pendingWrap = saved.pendingWrap && cursorColumn == columns - 1
    }

    private mutating func tabForward(_ count: Int) {
        pendingWrap = false
        var column = cursorColumn
        for _ in 0..<count {
            column += 1
            while column < columns - 1, !tabStops[column] { column += 1 }
            if column >= columns - 1 {
                column = columns - 1
                break
            }
        }
        cursorColumn = column
    }

    private mutating func tabBackward(_ count: Int) {
        pendingWrap = false
        var column = cursorColumn
        for _ in 0..<count {
            if column == 0 { break }
            column -= 1
            while column > 0, !tabStops[column] { column -= 1 }
        }
        cursorColumn = column
    }

    /// LF: down one row, scrolling the region when at its bottom.
    private mutating func index() {
        pendingWrap = false
        if cursorRow == scrollBottom {
            scrollUp(top: scrollTop, bottom: scrollBottom, count: 1)
        } else if cursorRow < rows - 1 {
            cursorRow += 1
        }
    }

    private mutating func reverseIndex() {
        pendingWrap = false
        if cursorRow == scrollTop {
            scrollDown(top: scrollTop, bottom: scrollBottom, count: 1)
        } else if cursorRow > 0 {
            cursorRow -= 1
        }
    }

    private mutating func wrapToNextLine() {
        buffer.wrapped[buffer.rowMap[cursorRow]] = true
        cursorColumn = 0
        index()
    }

    // MARK: - Printing

    /// A run of printable ASCII (0x20...0x7E) from `bytes[from..<to]`.
    private mutating func printASCII(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int) {
        var i = from
        while i < to {
            if pendingWrap {
                if autowrap { wrapToNextLine() } else { pendingWrap = false }
            }
            if insertMode {
                printScalar(UInt32(bytes[i]))
                i += 1
                continue
            }
            let column = cursorColumn
            let width = columns
            let n = min(width - column, to - i)
            let start = buffer.rowMap[cursorRow] * width + column
            let source = i
            buffer.cells.withUnsafeMutableBufferPointer { cells in
                let p = cells.baseAddress! + start
                if column > 0, p[0] == Self.continuation { p[-1] = Self.blank }
                if column + n < width, p[n] == Self.continuation { p[n] = Self.blank }
                for k in 0..<n { p[k] = UInt32(bytes[source + k]) }
            }
            i += n
            cursorColumn += n
            if cursorColumn >= width {
                cursorColumn = width - 1
                if autowrap {
                    pendingWrap = true
                } else if i < to {
                    // Without autowrap the rest overwrite the last column; only the final one stays.
                    buffer.cells[start + n - 1] = UInt32(bytes[to - 1])
                    i = to
                }
            }
        }
        lastGraphic = UInt32(bytes[to - 1])
    }

    private mutating func printScalar(_ scalar: UInt32) {
        if scalar >= 0x7F, scalar < 0xA0 { return } // DEL and C1 controls print nothing
        var width = CharacterWidth.of(scalar)
        if width == 0 {
            attachCombining(scalar)
            return
        }
        lastGraphic = scalar
        if pendingWrap {
            if autowrap { wrapToNextLine() } else { pendingWrap = false }
        }
        if width == 2 {
            if columns < 2 {
                width = 1
            } else if cursorColumn == columns - 1 {
                if autowrap {
                    clearCells(row: cursorRow, from: cursorColumn, to: columns)
                    wrapToNextLine()
                } else {
                    cursorColumn = columns - 2
                }
            }
        }
        if insertMode { insertBlanks(width) }
        let base = buffer.rowMap[cursorRow] * columns
        let column = cursorColumn
        if column > 0, buffer.cells[base + column] == Self.continuation { buffer.cells[base + column - 1] = Self.blank }
        let end = column + width
        if end < columns, buffer.cells[base + end] == Self.continuation { buffer.cells[base + end] = Self.blank }
        buffer.cells[base + column] = scalar
        if width == 2 { buffer.cells[base + column + 1] = Self.continuation }
        if end >= columns {
            cursorColumn = columns - 1
            pendingWrap = autowrap
        } else {
            cursorColumn = end
        }
    }

    /// A zero-width scalar joins the character before the cursor.
    private mutating func attachCombining(_ mark: UInt32) {
        var column = pendingWrap ? cursorColumn : cursorColumn - 1
        guard column >= 0 else { return }
        let base = buffer.rowMap[cursorRow] * columns
        if buffer.cells[base + column] == Self.continuation {
            column -= 1
            guard column >= 0 else { return }
        }
        let old = buffer.cells[base + column]
        var sequence: [UInt32]
        if old & Self.clusterFlag != 0 {
            let index = Int(old & ~Self.clusterFlag)
            guard index < clusters.count else { return }
            sequence = clusters[index]
            guard sequence.count <= Self.maxCombiningMarks else { return }
            sequence.append(mark)
        } else {
            sequence = [old, mark]
        }
        guard let id = intern(sequence) else { return }
        buffer.cells[base + column] = Self.clusterFlag | UInt32(id)
    }

    private mutating func intern(_ sequence: [UInt32]) -> Int? {
        if let id = clusterIDs[sequence] { return id }
        if clusters.count >= Self.maxClusters {
            collectClusters()
            if clusters.count >= Self.maxClusters { return nil }
        }
        clusters.append(sequence)
        clusterIDs[sequence] = clusters.count - 1
        return clusters.count - 1
    }

    /// Drops clusters no cell refers to and renumbers the rest.
    private mutating func collectClusters() {
        var remap = Array(repeating: -1, count: clusters.count)
        var kept: [[UInt32]] = []
        Self.renumber(&buffer.cells, clusters, &remap, &kept)
        if var other = inactive {
            inactive = nil
            Self.renumber(&other.cells, clusters, &remap, &kept)
            inactive = other
        }
        clusters = kept
        clusterIDs = [:]
        for (id, sequence) in kept.enumerated() { clusterIDs[sequence] = id }
    }

    private static func renumber(_ cells: inout [UInt32], _ clusters: [[UInt32]], _ remap: inout [Int], _ kept: inout [[UInt32]]) {
        for i in cells.indices {
            let cell = cells[i]
            guard cell & clusterFlag != 0 else { continue }
            let old = Int(cell & ~clusterFlag)
            guard old < clusters.count else {
                cells[i] = blank
                continue
            }
            if remap[old] < 0 {
                remap[old] = kept.count
                kept.append(clusters[old])
            }
            cells[i] = clusterFlag | UInt32(remap[old])
        }
    }
}
