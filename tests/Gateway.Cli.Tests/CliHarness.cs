using System.CommandLine;

namespace Gateway.Cli.Tests;

/// <summary>Runs `gateway ARGS` in process, as Program does, with captured output.</summary>
internal static class CliHarness
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var root = new RootCommand("test");
        foreach (var command in CommandCatalog.All())
        {
            root.Subcommands.Add(command);
        }
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliRunner.Run(root, args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Polls until <paramref name="condition"/> holds. For waiting on other processes
    /// (a file watch firing, a log line), never on protocol time.</summary>
    public static void WaitFor(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(watch.Elapsed < (timeout ?? TimeSpan.FromSeconds(20)), $"timed out waiting for {what}");
            Thread.Sleep(50);
        }
    }
}
