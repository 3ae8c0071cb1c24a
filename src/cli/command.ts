import { Command, type Option } from 'commander';

/** Commander methods that are not in its typings (stable in commander 14's lib/command.js). */
interface CommanderInternals {
  unknownOption(flag: string): void;
  missingMandatoryOptionValue(option: Option): never;
}

/**
 * Commander's Command, but an unknown option is reported before a missing required one: a mistyped
 * required option (`--scenaro`, `--form`) then gets "unknown option" and a suggestion instead of
 * "required option not specified", which sends the user looking for the option they did type.
 */
export class DistillCommand extends Command {
  override createCommand(name?: string): DistillCommand {
    return new DistillCommand(name);
  }

  /**
   * Commander calls this (from `_checkForMissingMandatoryOptions`) before it looks at unknown
   * options; `args` then holds the operands followed by the unknown options.
   * @internal
   */
  missingMandatoryOptionValue(option: Option): never {
    const base = Command.prototype as unknown as CommanderInternals;
    const unknown = this.args.find((a) => a.startsWith('-') && a !== '-' && a !== '--');
    if (unknown !== undefined) base.unknownOption.call(this, unknown);
    return base.missingMandatoryOptionValue.call(this, option);
  }
}
