using System.CommandLine;
using Gateway.Crypto;

namespace Gateway.Cli;

/// <summary>
/// `gateway genkey`: a new X25519 private key in base64, byte for byte like `wg genkey`
/// (44 characters and a newline). With --output the key goes to a file created 0600 instead.
/// </summary>
internal static class GenKeyCommand
{
    public static Command Create()
    {
        var output = new Option<FileInfo?>("--output", "-o")
        {
            Description = "Write the key to FILE (created with mode 0600) instead of standard output.",
        };
        var command = new Command("genkey", "Generate a new private key and print it in base64 (like `wg genkey`).");
        command.Options.Add(output);
        command.SetAction(parseResult =>
        {
            using var key = WireGuardKey.GeneratePrivate();
            WriteKey(parseResult, key, parseResult.GetValue(output));
            return 0;
        });
        return command;
    }

    /// <summary>Prints base64 + "\n" to the command's output, or writes it to a new 0600 file.</summary>
    internal static void WriteKey(ParseResult parseResult, WireGuardKey key, FileInfo? file)
    {
        string line = key.ToBase64() + "\n";
        if (file is null)
        {
            TextWriter stdout = parseResult.InvocationConfiguration.Output;
            stdout.Write(line);
            stdout.Flush();
            return;
        }
        WriteSecretFile(file.FullName, line);
    }

    /// <summary>
    /// Creates the key file with mode 0600 from the first byte on: the key is written to a new
    /// temporary file in the same directory (created 0600, so it is never readable by others,
    /// whatever the umask) which then replaces the target atomically. An existing file with
    /// looser permissions is therefore replaced, not rewritten in place.
    /// </summary>
    internal static void WriteSecretFile(string path, string content)
    {
        string directory = Path.GetDirectoryName(path) ?? ".";
        if (!Directory.Exists(directory))
        {
            throw new CliException($"directory does not exist: {directory}", 1);
        }
        string temp = Path.Combine(directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            Share = FileShare.None,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        try
        {
            using (var stream = new FileStream(temp, options))
            using (var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false)))
            {
                writer.Write(content);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new CliException($"cannot write {path}: {e.Message}", 1);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
