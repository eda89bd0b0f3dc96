using System.CommandLine;
using Gateway.Crypto;

namespace Gateway.Cli;

/// <summary>
/// `gateway pubkey`: reads a base64 private key on standard input and prints its public key,
/// like `wg pubkey`. Whitespace around the key (a trailing newline from `genkey`) is ignored;
/// anything else that is not exactly one wg-format key is a one-line error, exit code 1.
/// </summary>
internal static class PubKeyCommand
{
    // A wg key is 44 characters; reading a little more than that is enough to tell "key plus
    // whitespace" from "something else" without buffering arbitrary amounts of input.
    private const int MaxInput = 4096;

    public static Command Create()
    {
        var command = new Command("pubkey", "Read a private key in base64 on standard input and print its public key (like `wg pubkey`).");
        command.SetAction(parseResult =>
        {
            string text = ReadInput(Console.In);
            if (!WireGuardKey.TryParseBase64(text.Trim(), out WireGuardKey? privateKey) || privateKey is null)
            {
                throw new CliException("invalid private key on stdin (expected 44 base64 characters, as `wg genkey` prints)", 1);
            }
            using (privateKey)
            using (WireGuardKey publicKey = privateKey.DerivePublic())
            {
                TextWriter stdout = parseResult.InvocationConfiguration.Output;
                stdout.Write(publicKey.ToBase64() + "\n");
                stdout.Flush();
            }
            return 0;
        });
        return command;
    }

    private static string ReadInput(TextReader reader)
    {
        var buffer = new char[MaxInput + 1];
        int total = 0;
        int read;
        while (total < buffer.Length && (read = reader.Read(buffer, total, buffer.Length - total)) > 0)
        {
            total += read;
        }
        if (total > MaxInput)
        {
            throw new CliException("invalid private key on stdin (input too long)", 1);
        }
        return new string(buffer, 0, total);
    }
}
