import ArgumentParser

@main
struct Gatehouse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gatehouse",
        abstract: "An SSH and RDP recording gateway: authenticate, route, relay and audit sessions to your assets.",
        subcommands: [Serve.self, CheckConfig.self, HashPassword.self, Sessions.self, Commands.self, Play.self, Token.self, RDPPassword.self]
    )
}
