using System.CommandLine;
using Gateway.Crypto;

namespace Gateway.Cli;

/// <summary>`gateway genpsk`: 32 random bytes in base64, like `wg genpsk`.</summary>
internal static class GenPskCommand
{
    public static Command Create()
    {
        var output = new Option<FileInfo?>("--output", "-o")
        {
            Description = "Write the key to FILE (created with mode 0600) instead of standard output.",
        };
        var command = new Command("genpsk", "Generate a new preshared key and print it in base64 (like `wg genpsk`).");
        command.Options.Add(output);
        command.SetAction(parseResult =>
        {
            using var key = WireGuardKey.GeneratePreshared();
            GenKeyCommand.WriteKey(parseResult, key, parseResult.GetValue(output));
            return 0;
        });
        return command;
    }
}
