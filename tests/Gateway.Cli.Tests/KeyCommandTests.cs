using System.CommandLine;
using System.Text.RegularExpressions;

namespace Gateway.Cli.Tests;

/// <summary>Tests that replace Console.In must not run in parallel with each other.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleInputCollection
{
    public const string Name = "Console input";
}

[Collection(ConsoleInputCollection.Name)]
public partial class KeyCommandTests
{
    [GeneratedRegex("^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=\n$")]
    private static partial Regex WgKeyLine();

    internal static (int Code, string Out, string Err) Run(string? stdin, params string[] args)
    {
        var root = new RootCommand("test");
        foreach (var command in CommandCatalog.All())
        {
            root.Subcommands.Add(command);
        }
        TextReader previous = Console.In;
        Console.SetIn(new StringReader(stdin ?? string.Empty));
        try
        {
            var stdout = new StringWriter { NewLine = "\n" };
            var stderr = new StringWriter { NewLine = "\n" };
            int code = CliRunner.Run(root, args, stdout, stderr);
            return (code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetIn(previous);
        }
    }

    [Fact]
    public void GenKeyPrintsOneWgFormatKey()
    {
        var (code, output, err) = Run(null, "genkey");
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Matches(WgKeyLine(), output);
        byte[] key = Convert.FromBase64String(output.TrimEnd('\n'));
        Assert.Equal(0, key[0] & 7);          // clamped like wg genkey
        Assert.Equal(0x40, key[31] & 0xC0);
    }

    [Fact]
    public void GenPskPrintsOneWgFormatKeyEachTimeDifferent()
    {
        var (code1, out1, _) = Run(null, "genpsk");
        var (code2, out2, _) = Run(null, "genpsk");
        Assert.Equal(0, code1);
        Assert.Equal(0, code2);
        Assert.Matches(WgKeyLine(), out1);
        Assert.NotEqual(out1, out2);
    }

    [Theory]
    [InlineData("{0}")]
    [InlineData("{0}\n")]
    [InlineData("  {0}\r\n\n")]
    [InlineData("\t{0} ")]
    public void PubKeyAcceptsSurroundingWhitespace(string format)
    {
        // RFC 7748 6.1 Alice as a wg key: private 77076d.., public 8520f0..
        const string priv = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
        const string pub = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
        var (code, output, err) = Run(string.Format(System.Globalization.CultureInfo.InvariantCulture, format, priv), "pubkey");
        Assert.Equal("", err);
        Assert.Equal(0, code);
        Assert.Equal(pub + "\n", output);
    }

    [Fact]
    public void GenKeyPipedIntoPubKeyWorks()
    {
        var (_, key, _) = Run(null, "genkey");
        var (code, pub, err) = Run(key, "pubkey");
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Matches(WgKeyLine(), pub);
        Assert.NotEqual(key, pub);
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n")]
    [InlineData("not a key\n")]
    [InlineData("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LC=\n")]     // 43 chars
    [InlineData("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCoA=\n")]   // 45 chars
    [InlineData("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\nextra\n")]
    [InlineData("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo= dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=")]
    [InlineData("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25L!o=")]
    public void MalformedPrivateKeyIsOneLineErrorExitOne(string stdin)
    {
        var (code, output, err) = Run(stdin, "pubkey");
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.StartsWith("gateway: invalid private key on stdin", err);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void HugeInputIsRejectedWithoutStackTrace()
    {
        var (code, _, err) = Run(new string('A', 100_000), "pubkey");
        Assert.Equal(1, code);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
    }

    [Theory]
    [InlineData("genkey")]
    [InlineData("genpsk")]
    public void OutputFileIsCreatedWithMode0600(string command)
    {
        string dir = Directory.CreateTempSubdirectory("gateway-keytest-").FullName;
        try
        {
            string path = Path.Combine(dir, "key");
            var (code, output, err) = Run(null, command, "--output", path);
            Assert.Equal(0, code);
            Assert.Equal("", output);
            Assert.Equal("", err);
            Assert.Matches(WgKeyLine(), File.ReadAllText(path));
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            }
            Assert.Single(Directory.GetFiles(dir)); // no temporary file left behind
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void OutputFileReplacesAWorldReadableFileWith0600()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        string dir = Directory.CreateTempSubdirectory("gateway-keytest-").FullName;
        try
        {
            string path = Path.Combine(dir, "key");
            File.WriteAllText(path, "old\n");
            File.SetUnixFileMode(path, (UnixFileMode)0b110_100_100); // 0644
            var (code, _, _) = Run(null, "genkey", "-o", path);
            Assert.Equal(0, code);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            Assert.Matches(WgKeyLine(), File.ReadAllText(path));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void OutputIntoMissingDirectoryIsOneLineError()
    {
        var (code, _, err) = Run(null, "genkey", "--output", "/nonexistent-gateway-dir/key");
        Assert.Equal(1, code);
        Assert.StartsWith("gateway: ", err);
        Assert.DoesNotContain("   at ", err);
    }
}
