using System.Diagnostics;

namespace Gateway.Cli.Tests;

/// <summary>Byte-for-byte compatibility with the real `wg` tool (wireguard-tools), when installed.</summary>
[Collection(ConsoleInputCollection.Name)]
public class KeyInteropTests
{
    private const string Wg = "/usr/bin/wg";

    private static string WgPubKey(string stdin)
    {
        var psi = new ProcessStartInfo(Wg, "pubkey")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(psi)!;
        process.StandardInput.Write(stdin);
        process.StandardInput.Close();
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(10_000), "wg pubkey did not exit");
        Assert.True(process.ExitCode == 0, $"wg pubkey failed: {error}");
        return output;
    }

    [SkippableFact]
    public void PubKeyMatchesWgForTwentyRandomKeysAndWgAcceptsOurKeys()
    {
        Skip.IfNot(File.Exists(Wg), "wireguard-tools (/usr/bin/wg) is not installed");
        for (int i = 0; i < 20; i++)
        {
            var (genCode, privateKey, _) = KeyCommandTests.Run(null, "genkey");
            Assert.Equal(0, genCode);

            var (code, ours, err) = KeyCommandTests.Run(privateKey, "pubkey");
            Assert.Equal(0, code);
            Assert.Equal("", err);

            // wg accepts `gateway genkey` output and derives the same public key, byte for byte.
            Assert.Equal(WgPubKey(privateKey), ours);
        }
    }

    [SkippableFact]
    public void WgGenKeyOutputIsAcceptedByGatewayPubKey()
    {
        Skip.IfNot(File.Exists(Wg), "wireguard-tools (/usr/bin/wg) is not installed");
        var psi = new ProcessStartInfo(Wg, "genkey") { RedirectStandardOutput = true, UseShellExecute = false };
        using var process = Process.Start(psi)!;
        string wgKey = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(10_000));

        var (code, ours, err) = KeyCommandTests.Run(wgKey, "pubkey");
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Equal(WgPubKey(wgKey), ours);
    }
}
