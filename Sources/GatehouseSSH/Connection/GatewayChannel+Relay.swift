import CLibSSH
import Foundation
import GatehouseCore

/// The relaying phase of a channel: both directions moved as the SSH windows allow, and
/// everything that crosses teed to the recorder, the command extractor, the live channel and
/// the transfer auditor.
extension GatewayChannel {
    /// Whether libssh holds bytes that a pipe could pass on now.
    func canMove(_ relay: Relay) -> Bool {
        let up = relay.leg.channel
        if relay.output.held == 0, !relay.stdoutEOF, ssh_channel_window_size(channel) > 0, ssh_channel_poll(up, 0) > 0 { return true }
        if relay.errors.held == 0, !relay.stderrEOF, ssh_channel_window_size(channel) > 0, ssh_channel_poll(up, 1) > 0 { return true }
        if relay.input.held == 0, !relay.stdinEOFSent, ssh_channel_window_size(up) > 0, ssh_channel_poll(channel, 0) > 0 { return true }
        return false
    }

    /// One round of relaying both ways; true when bytes moved or the state changed.
    func relayOnce(_ relay: inout Relay) -> Bool {
        let up = relay.leg.channel
        let windowsBefore = (ssh_channel_window_size(up), ssh_channel_window_size(channel))
        var moved = false
        if clientClosed {
            endRelay(relay, clientGone: true)
            return true
        }
        if !relay.stdinEOFSent, sendWhatFits(&injected, to: up) { moved = true }
        if !relay.stdinEOFSent {
            let extractor = self.extractor
            let transform: ([UInt8]) -> [UInt8] = { [weak self] bytes in
                guard let self else { return bytes }
                var forward = bytes
                if self.live != nil, self.pty != nil {
                    let (passed, requests) = self.shareEscape.feed(bytes)
                    forward = passed
                    self.shareRequests += requests
                }
                if let transfers = self.transfers {
                    do {
                        let (passed, reply) = try transfers.client(forward)
                        self.transferReply += reply
                        forward = passed
                    } catch {
                        self.transferFailure = "\(error)"
                        return []
                    }
                }
                guard let extractor, self.pty != nil else { return forward }
                let decision = extractor.input(forward)
                if let notice = decision.blockedNotice { self.blockedNotice = notice }
                return decision.forward
            }
            switch relay.input.move(from: channel, to: up, transform: pty != nil || transfers != nil ? transform : nil,
                                    delivered: { deliveredInput($0) }) {
            case .moved(let n): moved = true; connection.bytesFromClient += n
            case .eof: ssh_channel_send_eof(up); relay.stdinEOFSent = true; moved = true
            case .idle: break
            }
        }
        if sendWhatFits(&transferReply, to: channel) { moved = true }
        if let failure = transferFailure {
            transferFailure = nil
            transferProtocolFailed(failure)
            return true
        }
        if !shareRequests.isEmpty {
            let requests = shareRequests
            shareRequests.removeAll()
            for r in requests { createInvite(r) }
        }
        if let notice = blockedNotice {
            blockedNotice = nil
            writeStderr("\r\ngatehouse: \(notice)\n")
        }
        // The recorder may hold the asset back (never the other way round): while its disk
        // backlog is full, asset output stays unread and the SSH window does the rest.
        let recorderFull = recorder?.isBackedUp ?? false
        if !relay.stdoutEOF && !recorderFull {
            let audited: (([UInt8]) -> [UInt8])? = transfers.map { transfers in
                { [weak self] bytes in
                    do { return try transfers.server(bytes) } catch {
                        self?.transferFailure = "\(error)"
                        return []
                    }
                }
            }
            switch relay.output.move(from: up, to: channel, transform: audited, delivered: { deliveredOutput($0, stderr: false) }) {
            case .moved(let n): moved = true; connection.bytesToClient += n
            case .eof: relay.stdoutEOF = true; moved = true
            case .idle: break
            }
        }
        if !relay.stderrEOF && !recorderFull {
            switch relay.errors.move(from: up, to: channel, delivered: { deliveredOutput($0, stderr: true) }) {
            case .moved(let n): moved = true; connection.bytesToClient += n
            case .eof: relay.stderrEOF = true; moved = true
            case .idle: break
            }
        }
        let upstreamGone = !relay.leg.isConnected
        if (relay.stdoutEOF && relay.stderrEOF && ssh_channel_is_closed(up) != 0) || upstreamGone {
            endRelay(relay, clientGone: false)
            return true
        }
        let changed = moved || windowsBefore != (ssh_channel_window_size(up), ssh_channel_window_size(channel))
        if !changed {
            connection.logger.trace("relay idle", metadata: [
                "out_eof": "\(relay.stdoutEOF)", "err_eof": "\(relay.stderrEOF)", "in_eof": "\(relay.stdinEOFSent)",
                "up_window": "\(ssh_channel_window_size(up))", "client_window": "\(ssh_channel_window_size(channel))",
                "up_closed": "\(ssh_channel_is_closed(up))", "up_connected": "\(relay.leg.isConnected)",
                "up_status": "\(ssh_get_status(relay.leg.session))", "exit": "\(String(describing: relay.leg.exit))"])
        }
        return changed
    }

    /// What the user typed or piped, as it went to the asset.
    func deliveredInput(_ bytes: UnsafeRawBufferPointer) {
        if lastInputAuthor != nil, let recorder, recorder.options.recordInput {
            lastInputAuthor = nil
            _ = recorder.marker("input from \(login.user)")
        }
        recorder?.input(bytes)
        live?.input(count: bytes.count)
        if !connection.context.sinks.isEmpty { connection.emit(.input(Data(bytes))) }
    }

    /// What the user's terminal received from the asset.
    func deliveredOutput(_ bytes: UnsafeRawBufferPointer, stderr: Bool) {
        recorder?.output(bytes)
        extractor?.output(bytes)
        live?.output(bytes)

        if !connection.context.sinks.isEmpty { connection.emit(.output(Data(bytes), stream: stderr ? .stderr : .stdout)) }
    }

    func endRelay(_ relay: Relay, clientGone: Bool) {
        let duration = String(format: "%.1f", Date().timeIntervalSince(relay.started))
        connection.logger.info("asset session end", metadata: ["user": "\(login.user)", "asset": "\(relay.target.asset.name)",
                                                               "account": "\(relay.target.account.name)", "duration": "\(duration)s"])
        var exit = relay.leg.exit
        if exit == nil, case let status = ssh_channel_get_exit_status(relay.leg.channel), status >= 0 {
            exit = .status(status) // libssh keeps the status even when no callback saw it
        }
        let lost = !relay.leg.isConnected && exit == nil
        relay.leg.shutdown()
        phase = .finished
        if clientGone {
            endAudit(.finished, reason: "the user disconnected")
            return
        }
        if lost { writeStderr("gatehouse: connection to asset \"\(relay.target.asset.name)\" was lost\n") }
        // The recording must be whole before the user hears that all went well.
        if let recorder, !recordingFailureHandled, let failure = recorder.drain() {
            recordingFailureHandled = true
            let message = "cannot write recording \(recorder.path): \(failure)"
            connection.logger.error("recording failed", metadata: ["session": "\(audit?.record.shortID ?? "-")", "error": "\(message)"])
            switch connection.context.audit.policy.onFailure {
            case .terminate:
                let text = "this session cannot be recorded (\(message)), so it has been ended"
                writeStderr("\ngatehouse: \(text)\n")
                endAudit(.terminated, by: "gatehouse", reason: text)
                if relay.returnToMenu { showMenu(note: nil) } else { finishClient(status: 255) }
                return
            case .continue:
                audit?.activity(Activity(.recordingGap, "recording stopped: \(message)"))
            }
        }
        endAudit(.finished, reason: lost ? "the connection to the asset was lost" : exit.map { "the session ended (\($0.text))" } ?? "the session ended")
        if relay.returnToMenu {
            write(Array("\r\nConnection to \(relay.target.asset.name) closed.\r\n".utf8))
            showMenu(note: nil)
            return
        }
        switch exit {
        case .status(let status)?: ssh_channel_request_send_exit_status(channel, status)
        case let .signal(name, core, message)?: ssh_channel_request_send_exit_signal(channel, name, core ? 1 : 0, message, "")
        case nil: ssh_channel_request_send_exit_status(channel, 255)
        }
        closeClient()
    }
}
