using System.CommandLine;

namespace Gateway.Cli;

/// <summary>A mistake the user can fix: printed as one line, never as a stack trace.</summary>
internal sealed class CliException(string message, int exitCode = 2) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

internal static class CliRunner
{
    /// <summary>Exit code for bad arguments (unknown option, missing value).</summary>
    public const int UsageExitCode = 2;

    public static int Run(RootCommand root, string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                stderr.WriteLine($"gateway: {error.Message}");
            }
            stderr.WriteLine("Run 'gateway --help' for usage.");
            return UsageExitCode;
        }

        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (CliException e)
        {
            stderr.WriteLine($"gateway: {e.Message}");
            return e.ExitCode;
        }
        catch (IOException e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            stderr.WriteLine($"gateway: {e.Message}");
            return UsageExitCode;
        }
        catch (UnauthorizedAccessException e)
        {
            stderr.WriteLine($"gateway: {e.Message}");
            return UsageExitCode;
        }
    }
}
