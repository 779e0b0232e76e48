using System.Security.Cryptography;
using Kvasir.Protocol;

namespace Kvasir.Cli;

/// <summary>
/// Where a client verb's auth key comes from, first found wins: <c>--auth-key HEX</c>, <c>--auth-key-file PATH</c>,
/// <c>KVASIR_AUTH_KEY</c>, <c>KVASIR_AUTH_KEY_FILE</c>. A key file must be readable by its owner only (it is
/// the node's whole secret); a key given on the command line is visible to every user in <c>ps</c>, so the file
/// and the variables are what docs/operations.md recommends.
/// </summary>
internal static class AuthKeySource
{
    public const string KeyVariable = "KVASIR_AUTH_KEY";
    public const string FileVariable = "KVASIR_AUTH_KEY_FILE";

    private const UnixFileMode NotOwner = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>The key (64 hex chars) or null for no auth; a bad source is a usage error naming it.</summary>
    public static string? Resolve(CommandLine cl)
    {
        string? hex = cl.Get("auth-key"), file = cl.Get("auth-key-file");
        if (hex is not null && file is not null) throw new UsageException("give --auth-key or --auth-key-file, not both");
        if (hex is not null) return Check(hex, "--auth-key");
        if (file is not null) return ReadFile(file, "--auth-key-file");
        if (Environment.GetEnvironmentVariable(KeyVariable) is { Length: > 0 } env) return Check(env, KeyVariable);
        if (Environment.GetEnvironmentVariable(FileVariable) is { Length: > 0 } envFile) return ReadFile(envFile, FileVariable);
        return null;
    }

    /// <summary>The key in <paramref name="path"/> (64 hex chars, surrounding whitespace ignored).</summary>
    public static string ReadFile(string path, string source)
    {
        string text;
        try
        {
            if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & NotOwner) != 0)
                throw new UsageException($"{source}: {path} is readable by other users (mode {Octal(File.GetUnixFileMode(path))}); run chmod 600 {path}");
            text = File.ReadAllText(path).Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{source}: cannot read {path}: {ex.Message}");
        }
        return Check(text, $"{source} {path}");
    }

    /// <summary>
    /// Writes a new random key to a new file of mode 0600 (its directory made 0700 when missing) and returns true;
    /// a file that already holds a valid private key is kept as it is (false): keygen never overwrites a key.
    /// </summary>
    public static bool Generate(string path)
    {
        if (OperatingSystem.IsWindows()) throw new UsageException("keygen writes a file only its owner can read: Unix only");
        if (File.Exists(path))
        {
            ReadFile(path, "keygen");   // private and valid, or a usage error saying what is wrong with it
            return false;
        }
        var hex = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        try
        {
            if (Path.GetDirectoryName(path) is { Length: > 0 } dir && !Directory.Exists(dir))
                Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            using var f = new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            });
            f.Write(System.Text.Encoding.ASCII.GetBytes(hex + "\n"));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"cannot write {path}: {ex.Message}");
        }
        return true;
    }

    private static string Check(string hex, string source)
    {
        try { AuthHandshake.ParseKey(hex); }
        catch (FormatException ex) { throw new UsageException($"{source}: {ex.Message}"); }
        return hex;
    }

    private static string Octal(UnixFileMode mode) => "0" + Convert.ToString((int)mode & 0x1FF, 8);
}
